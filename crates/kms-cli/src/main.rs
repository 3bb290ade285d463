//! `kms`: the key-management server and its command-line client.
//!
//! `kms serve` runs the admin HTTP API (`kms-admin`) over a backend (local files by default);
//! every other command is a client of a running server. See `kms --help`.
//!
//! - `cli`: the clap definitions (`kms serve` hides and refuses the client options);
//! - `serve` + `hardening`: settings from flags, `KMS_*` and `kms.toml`, binding before any
//!   state is created, the data folder, core dumps off;
//! - `config_reference` + `config_check`: the one table of every `kms.toml` option, from which
//!   `kms config example` and docs/configuration.md are generated, and the file checks;
//! - `token` + `client`: where the bearer token comes from, and the HTTP client;
//! - `commands`, `files`, `rewrap`: the client commands (`encrypt`/`decrypt` envelopes,
//!   `rewrap` of their data keys);
//! - `manual`: shell completions and the man page from the clap definitions.

#![forbid(unsafe_code)]
// Printing results is this binary's job.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

mod alias;
mod aws_keys;
mod backup;
mod cli;
mod client;
mod commands;
mod config_check;
mod config_reference;
mod files;
#[cfg(test)]
mod format_vectors;
mod hardening;
mod manual;
mod migrate;
mod migrate_vault;
mod output;
mod pairs;
mod rewrap;
mod serve;
mod token;

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args_os()) {
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
