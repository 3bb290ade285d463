//! Project automation (matklad's xtask pattern): `cargo xtask <task>`.
//!
//! - `test`: the independent Python check of the published format vectors (`vectors`), then
//!   every test of the workspace with `--all-features` (so the live test targets of features
//!   `live-vault` and `aws-cli` are built), against a real OpenBao dev server it starts and
//!   always stops (see [`openbao`]; a plain `cargo test` leaves those targets out and prints
//!   which).
//! - `vectors`: only the format-vector check: `docs/vectors/check.py`, with `cryptography` and
//!   `argon2-cffi` installed into `.tools/python` on first use (see [`pytools`]).
//! - `aws-clients`: boto3, the AWS CLI and the AWS Encryption SDK (installed into
//!   `.tools/python`) against a `kms serve` it starts and always stops, on the local backend
//!   and then on an OpenBao dev server of its own (see [`aws_clients`]); `test` runs it too.
//! - `byok`: key material made by Python `cryptography`, wrapped and imported through the
//!   native API of a real `kms serve`, a data key opened with it by `docs/vectors/kmsformats.py`
//!   (see [`byok`]); `test` runs it too.
//! - `ci`: everything CI checks, in order: formatting, clippy with warnings denied, docs, the
//!   facade's feature matrix, the layering rules, `cargo deny` (when installed), `test`, then
//!   `fuzz --ci` (60 s per target).
//! - `bench [NAME...]`: the benchmarks, each a `harness = false` bench target of the crate that
//!   owns it, listed in [`BENCHES`]; `bench aws` also starts a moto server (see [`moto`]) to
//!   compare with.
//! - `fuzz [--ci] [SECONDS]`: every `cargo fuzz` target in `fuzz/` for SECONDS each (default
//!   60) from the seed corpus in `fuzz/corpus/<target>`; needs cargo-fuzz and a nightly
//!   toolchain. `ci` runs it with `--ci`: a machine without them skips it with one line.
//! - `layering`: only the layering rules of [`layering`] (`ci` runs them too).
//! - `openbao`: one OpenBao dev server for a development loop; prints the environment to export.
//! - `ha [SECONDS]`: a 3-node OpenBao Raft cluster and two `kms serve` processes; mixed load
//!   for SECONDS (default 40) with the OpenBao leader SIGKILLed mid-run (see [`ha`]).
//!
//! This crate is built before every task, so it keeps dependencies out: it runs commands, and
//! its one dependency, `kms-testkit` without features, is the std-only OpenBao launcher the
//! tests and benches share.

mod aws_clients;
mod byok;
mod ha;
mod layering;
mod moto;
mod openbao;
mod pytools;

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("vectors") => check_format_vectors(),
        Some("aws-clients") => aws_clients::run(&workspace_root()).map(drop),
        Some("byok") => byok::run(&workspace_root()),
        Some("ci") => ci(),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        Some("openbao") => openbao_dev(),
        Some("layering") => layering::check().and_then(|()| layering::check_cli_uses_the_facade_only()),
        Some("ha") => match args.get(1).map(|s| s.parse::<u64>()) {
            None => ha::run(&workspace_root(), 40),
            Some(Ok(seconds)) if seconds >= 6 => ha::run(&workspace_root(), seconds),
            Some(_) => Err("SECONDS must be a whole number, at least 6".into()),
        },
        _ => {
            eprintln!(
                "usage: cargo xtask <test | vectors | aws-clients | byok | ci | bench [{}] | fuzz [--ci] [SECONDS] | layering | openbao | ha [SECONDS]>",
                bench_names().join("|")
            );
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

/// The `cargo` that invoked us (so toolchain overrides carry through).
fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs `cargo ARGS` in the workspace root and fails on a non-zero exit.
fn cargo(args: &[&str]) -> Result<(), String> {
    cargo_with_env(args, &[])
}

/// Runs `cargo ARGS` with extra environment variables.
fn cargo_with_env(args: &[&str], env: &[(&str, String)]) -> Result<(), String> {
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(cargo_bin())
        .args(args)
        .current_dir(workspace_root())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("`cargo {}` failed ({status})", args.join(" "))) }
}

/// Runs `cargo ARGS` and returns its standard output.
fn cargo_output(args: &[&str]) -> Result<String, String> {
    let output = Command::new(cargo_bin())
        .args(args)
        .current_dir(workspace_root())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!("`cargo {}` failed:\n{}", args.join(" "), String::from_utf8_lossy(&output.stderr)))
    }
}

fn workspace_root() -> std::path::PathBuf {
    let manifest_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map(std::path::Path::to_path_buf).unwrap_or(manifest_dir)
}

/// Every test, with a fresh OpenBao dev server for the Vault suite; the server is stopped
/// when this returns, whether the tests passed or not.
fn test() -> Result<(), String> {
    check_format_vectors()?;
    byok::run(&workspace_root())?;
    let aws_cli_dir = aws_clients::run(&workspace_root())?;
    let server = openbao::start(&workspace_root())?;
    eprintln!(
        "xtask: OpenBao dev server up (log: {})",
        server.log().map(|l| l.display().to_string()).unwrap_or_default()
    );
    // The README's walk-through (kms-cli tests/readme.rs) runs `aws kms ...`: the AWS CLI
    // installed above, whether or not the machine has one of its own.
    let mut path = std::ffi::OsString::from(aws_cli_dir.as_os_str());
    if let Some(existing) = std::env::var_os("PATH") {
        path.push(":");
        path.push(existing);
    }
    let mut env = server.env();
    env.push(("PATH", path.to_string_lossy().into_owned()));
    let result = cargo_with_env(&["test", "--workspace", "--all-features"], &env);
    drop(server);
    result?;
    // The HA run, CI-sized: long enough to outlast one Raft election with default timing.
    ha::run(&workspace_root(), CI_HA_SECONDS)
}

/// The independent check of the published format vectors: `docs/vectors/check.py`, written
/// from `docs/formats.md` alone, run with the Python packages it needs installed into
/// `.tools/python`. (Each vector is also checked by a Rust test of the crate that owns it.)
fn check_format_vectors() -> Result<(), String> {
    let root = workspace_root();
    let tools = pytools::PythonTools::ensure(&root, pytools::VECTOR_CHECKER)?;
    tools.run_script(&root.join("docs").join("vectors").join("check.py"), &[])
}

/// Load duration of the HA run inside `cargo xtask test`.
const CI_HA_SECONDS: u64 = 24;

/// `cargo xtask openbao`: one dev server for a development loop; prints the environment to
/// export and runs until interrupted (Ctrl-C stops the server with it).
fn openbao_dev() -> Result<(), String> {
    let server = openbao::start(&workspace_root())?;
    let mut out = String::new();
    for (name, value) in server.env() {
        out.push_str(&format!("export {name}={value}\n"));
    }
    let env_file = workspace_root().join("target").join("openbao").join("env.sh");
    std::fs::write(&env_file, &out).map_err(|e| format!("cannot write {}: {e}", env_file.display()))?;
    #[allow(clippy::print_stdout)] // printing the environment is this task's job
    {
        print!("{out}");
        let log = server.log().map(|l| l.display().to_string()).unwrap_or_default();
        println!("# also written to {}; log: {log}; Ctrl-C stops the server", env_file.display());
    }
    Ok(server.wait()?)
}

fn ci() -> Result<(), String> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"])?;
    docs()?;
    feature_matrix()?;
    layering::check()?;
    layering::check_cli_uses_the_facade_only()?;
    deny()?;
    test()?;
    // Bounded: each target for CI_FUZZ_SECONDS; skipped with a line where there is no nightly.
    fuzz(&["--ci".to_owned(), CI_FUZZ_SECONDS.to_string()])
}

/// Seconds per fuzz target inside `cargo xtask ci`.
const CI_FUZZ_SECONDS: u64 = 60;

fn docs() -> Result<(), String> {
    // SAFETY of the environment: only this process and its children see the variable.
    eprintln!("$ RUSTDOCFLAGS='-D warnings' cargo doc --workspace --all-features --no-deps");
    let status = Command::new(cargo_bin())
        .args(["doc", "--workspace", "--all-features", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings")
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() { Ok(()) } else { Err("documentation has warnings".into()) }
}

/// The facade's features must each build alone, together, and not at all.
const FACADE_FEATURE_SETS: &[&[&str]] = &[
    &["--no-default-features"],
    &["--no-default-features", "--features", "local"],
    &["--no-default-features", "--features", "vault"],
    &["--no-default-features", "--features", "admin"],
    &["--no-default-features", "--features", "sse"],
    &["--no-default-features", "--features", "testing"],
    &["--all-features"],
];

fn feature_matrix() -> Result<(), String> {
    for features in FACADE_FEATURE_SETS {
        let mut args = vec!["check", "--quiet", "-p", "kms", "--all-targets"];
        args.extend_from_slice(features);
        cargo(&args)?;
    }
    Ok(())
}

fn deny() -> Result<(), String> {
    let installed =
        Command::new(cargo_bin()).args(["deny", "--version"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !installed {
        eprintln!("xtask: cargo-deny is not installed; skipping `cargo deny check` (cargo install cargo-deny)");
        return Ok(());
    }
    cargo(&["deny", "--all-features", "check", "bans", "licenses", "sources"])?;
    // The advisory database is a git clone; where the machine cannot reach it, use a copy
    // fetched earlier, or say plainly that advisories were not checked.
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo")));
    let has_db = || {
        home.as_ref()
            .map(|h| h.join("advisory-dbs"))
            .and_then(|dir| std::fs::read_dir(dir).ok())
            .is_some_and(|mut entries| entries.any(|e| e.is_ok_and(|e| e.path().join(".git").exists())))
    };
    if !has_db() && (cargo(&["deny", "fetch", "db"]).is_err() || !has_db()) {
        eprintln!("xtask: the RustSec advisory database cannot be fetched from here; advisories NOT checked");
        return Ok(());
    }
    // `--offline` (a global flag since cargo-deny 0.17, which dropped `check --disable-fetch`)
    // uses the database found above without touching the network.
    cargo(&["deny", "--offline", "--all-features", "check", "advisories"])
}

/// `cargo xtask bench NAME` runs `cargo bench -p PACKAGE --bench NAME`.
const BENCHES: &[(&str, &str)] = &[
    ("aws", "kms-admin"),
    ("crypto", "kms-crypto"),
    ("ha", "kms-backend-vault"),
    ("http", "kms-admin"),
    ("local", "kms-backend-local"),
    ("scale", "kms-backend-local"),
    ("sse", "kms"),
    ("vault", "kms-backend-vault"),
];

/// `cargo xtask fuzz [SECONDS]` runs each of these `cargo fuzz` targets (in `fuzz/`) in turn.
const FUZZ_TARGETS: &[&str] = &["stream_header", "envelope_open", "stream_decrypt"];

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
        // The HA benchmark needs a cluster and kms servers: xtask starts them.
        if *name == "ha" {
            ha::bench(&workspace_root())?;
            continue;
        }
        // The Vault benchmark starts its own OpenBao server: hand it the `bao` binary.
        let mut env = Vec::new();
        if *name == "vault" {
            let bin = openbao::find_or_install_bao(&workspace_root())?;
            env.push(("KMS_TEST_BAO_BIN", bin.display().to_string()));
        }
        // The AWS benchmark compares with moto on this machine: start it, stopped on drop.
        // Without it (no Python, no network for pip, …) the bench still runs and says so.
        let moto = if *name == "aws" {
            moto::MotoServer::start(&workspace_root())
                .inspect_err(|e| eprintln!("xtask: moto unavailable, the AWS bench runs without it: {e}"))
                .ok()
        } else {
            None
        };
        if let Some(moto) = &moto {
            env.push((moto::URL_VAR, moto.url()));
        }
        let result = cargo_with_env(&["bench", "-p", package, "--all-features", "--bench", name], &env);
        drop(moto);
        result?;
    }
    Ok(())
}

/// `cargo xtask fuzz [--ci] [SECONDS]`: every target of [`FUZZ_TARGETS`] for SECONDS (default
/// 60) each with cargo-fuzz on nightly, starting from the seed corpus kept in the repository
/// (`fuzz/corpus/<target>`, read only: new inputs go to `target/fuzz-corpus/<target>`, so the
/// repository's corpus stays small). With `--ci` (what `cargo xtask ci` runs) a machine without
/// the nightly toolchain or cargo-fuzz skips fuzzing with one line saying so; without it, that
/// is an error.
fn fuzz(args: &[String]) -> Result<(), String> {
    let ci = args.iter().any(|a| a == "--ci");
    let seconds: u64 = match args.iter().find(|a| *a != "--ci") {
        None => 60,
        Some(s) => s.parse().map_err(|_| format!("SECONDS must be a whole number, not `{s}`"))?,
    };
    let has = |args: &[&str]| Command::new("cargo").args(args).output().map(|o| o.status.success()).unwrap_or(false);
    let missing = if !has(&["+nightly", "--version"]) {
        Some("no nightly toolchain (`rustup toolchain install nightly`)")
    } else if !has(&["+nightly", "fuzz", "--version"]) {
        Some("cargo-fuzz is not installed (`cargo install cargo-fuzz`)")
    } else {
        None
    };
    match (missing, ci) {
        (Some(why), true) => {
            eprintln!("xtask: fuzz: SKIPPED, {why}; the fuzz targets did not run");
            return Ok(());
        }
        (Some(why), false) => return Err(format!("fuzzing needs nightly and cargo-fuzz: {why}")),
        (None, _) => {}
    }
    let root = workspace_root();
    for target in FUZZ_TARGETS {
        let seeds = root.join("fuzz").join("corpus").join(target);
        if !seeds.is_dir() {
            return Err(format!(
                "the seed corpus {} is missing: `python3 fuzz/make_seeds.py` writes it from docs/vectors",
                seeds.display()
            ));
        }
        let scratch = root.join("target").join("fuzz-corpus").join(target);
        std::fs::create_dir_all(&scratch).map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
        let max_time = format!("-max_total_time={seconds}");
        eprintln!("$ cargo +nightly fuzz run {target} {} {} -- {max_time}", scratch.display(), seeds.display());
        let status = Command::new("cargo")
            .current_dir(&root)
            .args(["+nightly", "fuzz", "run", target])
            .arg(&scratch)
            .arg(&seeds)
            .args(["--", &max_time])
            .status()
            .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
        if !status.success() {
            return Err(format!(
                "fuzz target `{target}` failed ({status}); the crashing input is in fuzz/artifacts/{target}"
            ));
        }
    }
    Ok(())
}
