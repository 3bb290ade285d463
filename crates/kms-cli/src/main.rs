//! `kms`: the key-management server and its command-line client.
//!
//! `kms serve` runs the admin HTTP API (`kms-admin`) over a backend (local files by default);
//! every other command is a client of a running server. See `kms --help`.

#![forbid(unsafe_code)]
// Printing results is this binary's job.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod client;
mod commands;
mod files;
#[cfg(test)]
mod format_vectors;
mod output;
mod serve;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { client::exit::USAGE } else { client::exit::OK };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("kms: cannot start the async runtime: {err}");
            return ExitCode::from(client::exit::FAILED);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kms: {}", err.message);
            ExitCode::from(err.code)
        }
    }
}
