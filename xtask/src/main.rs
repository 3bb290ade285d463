//! Project automation (matklad's xtask pattern): `cargo xtask <task>`.
//!
//! Tasks: `test` runs every test of the workspace; `ci` is everything CI checks;
//! `bench [NAME...]` runs the benchmarks (each a `harness = false` bench target of the crate
//! that owns it, listed in [`BENCHES`]).

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("ci") => ci(),
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <test|ci|bench [{}]>", bench_names().join("|"));
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
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(&cargo).args(args).status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("`cargo {}` failed ({status})", args.join(" "))) }
}

fn test() -> Result<(), String> {
    cargo(&["test", "--workspace", "--all-features"])
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
