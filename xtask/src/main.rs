//! Project automation (matklad's xtask pattern): `cargo xtask <task>`.
//!
//! Tasks: `test` runs every test of the workspace (against a real OpenBao server it starts and
//! stops, see [`openbao`]); `ci` is everything CI checks; `bench [NAME...]` runs the benchmarks
//! (each a `harness = false` bench target of the crate that owns it, listed in [`BENCHES`]);
//! `openbao` starts one OpenBao dev server for a development loop and prints its environment.

mod openbao;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("ci") => ci(),
        Some("bench") => bench(&args[1..]),
        Some("openbao") => openbao_dev(),
        _ => {
            eprintln!("usage: cargo xtask <test|ci|bench [{}]|openbao>", bench_names().join("|"));
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn cargo(args: &[&str]) -> Result<(), String> {
    cargo_with_env(args, &[])
}

fn cargo_with_env(args: &[&str], env: &[(&str, String)]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("`cargo {}` failed ({status})", args.join(" "))) }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace root").to_path_buf()
}

/// Every test, with a fresh OpenBao dev server for the Vault suite; the server is stopped
/// when this returns, whether the tests passed or not.
fn test() -> Result<(), String> {
    let server = openbao::OpenBao::start(&workspace_root())?;
    eprintln!("xtask: OpenBao dev server up (log: {})", server.log().display());
    let result = cargo_with_env(&["test", "--workspace", "--all-features"], &server.env());
    drop(server);
    result
}

/// `cargo xtask openbao`: one dev server for a development loop; prints the environment to
/// export and runs until interrupted (Ctrl-C stops the server with it).
fn openbao_dev() -> Result<(), String> {
    let server = openbao::OpenBao::start(&workspace_root())?;
    let mut out = String::new();
    for (name, value) in server.env() {
        out.push_str(&format!("export {name}={value}\n"));
    }
    let env_file = workspace_root().join("target").join("openbao").join("env.sh");
    std::fs::write(&env_file, &out).map_err(|e| format!("cannot write {}: {e}", env_file.display()))?;
    #[allow(clippy::print_stdout)] // printing the environment is this task's job
    {
        print!("{out}");
        println!("# also written to {}; log: {}; Ctrl-C stops the server", env_file.display(), server.log().display());
    }
    server.wait()
}

fn ci() -> Result<(), String> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"])?;
    test()
}

/// `cargo xtask bench NAME` runs `cargo bench -p PACKAGE --bench NAME`.
const BENCHES: &[(&str, &str)] = &[];

fn bench_names() -> Vec<&'static str> {
    BENCHES.iter().map(|(name, _)| *name).collect()
}

fn bench(names: &[String]) -> Result<(), String> {
    let selected: Vec<&(&str, &str)> = if names.is_empty() {
        BENCHES.iter().collect()
    } else {
        names
            .iter()
            .map(|n| {
                BENCHES
                    .iter()
                    .find(|(name, _)| name == n)
                    .ok_or_else(|| format!("unknown benchmark `{n}`; known: {}", bench_names().join(", ")))
            })
            .collect::<Result<_, _>>()?
    };
    if selected.is_empty() {
        return Err("no benchmarks are registered yet".into());
    }
    for (name, package) in selected {
        cargo(&["bench", "-p", package, "--all-features", "--bench", name])?;
    }
    Ok(())
}
