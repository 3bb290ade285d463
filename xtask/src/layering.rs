//! Layering rules. Dependencies are checked with `cargo tree` (the wgpu pattern): a crate low
//! in the stack must not pull in what belongs higher up, whatever features its dependents turn
//! on. And cryptography stays in `kms-crypto`: no other source file of the workspace names
//! ring's AEAD, HKDF, HMAC or random number generator (see [`check_crypto_confinement`]).

use std::fs;
use std::path::{Path, PathBuf};

use crate::cargo_output;

/// (package, cargo flags, crates that must not appear in its normal dependency tree, why).
const RULES: &[(&str, &[&str], &[&str], &str)] = &[
    (
        "kms-types",
        &["--all-features"],
        &["tokio", "ring", "hyper", "vaultrs", "reqwest"],
        "the vocabulary crate stays sync and runtime-free",
    ),
    (
        "kms-crypto",
        &[],
        &["tokio", "hyper", "vaultrs", "reqwest"],
        "crypto is sync by default (tokio only behind its feature)",
    ),
    ("kms-core", &[], &["hyper", "vaultrs", "reqwest"], "the core knows no backend and no HTTP"),
    (
        "kms",
        &["--no-default-features", "--features", "local"],
        &["vaultrs", "hyper", "reqwest"],
        "the local-only facade pulls no Vault client and no HTTP stack",
    ),
];

/// Fails if any rule is broken, naming the crate and the path that pulls it in (or the file
/// and line that uses ring's cryptography outside `kms-crypto`).
pub(crate) fn check() -> Result<(), String> {
    check_crypto_confinement(&crate::workspace_root())?;
    for (package, flags, forbidden, why) in RULES {
        let mut args = vec!["tree", "-p", package, "-e", "normal", "--prefix", "none", "--format", "{p}"];
        args.extend_from_slice(flags);
        let tree = cargo_output(&args)?;
        for crate_name in *forbidden {
            let found = tree.lines().any(|line| line.split_whitespace().next() == Some(crate_name));
            if found {
                return Err(format!(
                    "layering: `{package}` ({}) depends on `{crate_name}`: {why}; see `cargo tree -p {package} -i {crate_name} {}`",
                    flags.join(" "),
                    flags.join(" ")
                ));
            }
        }
        eprintln!("layering: {package} {} is free of {}", flags.join(" "), forbidden.join(", "));
    }
    Ok(())
}

/// The ring modules only `kms-crypto` may use: everything that seals, derives, authenticates or
/// draws randomness. `ring::digest` (plain SHA-256) stays open to every crate.
const CRYPTO_MODULES: &[&str] = &["aead", "hkdf", "hmac", "rand"];

/// Where the workspace's Rust sources live (every crate, the fuzz targets).
const SOURCE_ROOTS: &[&str] = &["crates", "examples", "fuzz"];

/// The one crate allowed to use [`CRYPTO_MODULES`]. All of it, benches included: that is where
/// the benchmarks that measure raw ring as their baseline live (`benches/crypto.rs` compares the
/// stream with raw ring on the same buffers), so no per-file exemption is needed. A baseline
/// against raw ring belongs there, beside the code it measures.
const CRYPTO_CRATE: &str = "crates/kms-crypto";

/// Fails on the first source file outside [`CRYPTO_CRATE`] that uses one of [`CRYPTO_MODULES`]
/// of ring, naming file, line and module: such code goes through `kms_crypto::{rand, kdf, mac,
/// aead, envelope, cipher}` instead.
pub(crate) fn check_crypto_confinement(root: &Path) -> Result<(), String> {
    let mut files = Vec::new();
    for dir in SOURCE_ROOTS {
        rust_files(&root.join(dir), &root.join(CRYPTO_CRATE), &mut files)?;
    }
    files.sort();
    for file in &files {
        let source = fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        if let Some((line, module)) = forbidden_ring_uses(&source).into_iter().next() {
            let shown = file.strip_prefix(root).unwrap_or(file).display();
            return Err(format!(
                "layering: {shown}:{line} uses `ring::{module}`: only kms-crypto uses ring's {} (use kms_crypto::rand, kdf, mac, aead, envelope or cipher)",
                CRYPTO_MODULES.join(", ")
            ));
        }
    }
    eprintln!(
        "layering: {} source files outside kms-crypto use no ring::{{{}}}",
        files.len(),
        CRYPTO_MODULES.join(", ")
    );
    Ok(())
}

/// Every `.rs` file under `dir`, skipping `target` directories and `skip`.
fn rust_files(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) }; // an absent root (no examples/) is fine
    for entry in entries {
        let path = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?.path();
        if path == skip || path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, skip, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The (1-based line, module) of every use of one of [`CRYPTO_MODULES`] in `source`: a path
/// `ring::MODULE` or a group `ring::{.., MODULE, ..}`, where `ring` is the crate (not the tail
/// of another path such as `rustls::crypto::ring::default_provider`). Line comments are
/// skipped, so prose may name the modules.
fn forbidden_ring_uses(source: &str) -> Vec<(usize, &'static str)> {
    let code: String = source.lines().map(without_comment).collect::<Vec<_>>().join("\n");
    let mut found = Vec::new();
    for (at, _) in code.match_indices("ring::") {
        let starts_path = code[..at].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'));
        if !starts_path {
            continue;
        }
        let rest = &code[at + "ring::".len()..];
        let named: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
            None => vec![rest],
        };
        let line = code[..at].matches('\n').count() + 1;
        for item in named {
            let head: String = item.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if let Some(module) = CRYPTO_MODULES.iter().find(|m| **m == head) {
                found.push((line, *module));
            }
        }
    }
    found
}

/// `line` without its `//` comment: one that starts the line or follows a space (so the
/// `//` of a URL in a string is not taken for one).
fn without_comment(line: &str) -> &str {
    let mut from = 0;
    while let Some(i) = line[from..].find("//").map(|i| i + from) {
        if i == 0 || line[..i].ends_with(char::is_whitespace) {
            return &line[..i];
        }
        from = i + 2;
    }
    line
}

/// `kms-cli` reaches the workspace through the facade `kms` only: its direct normal
/// dependencies include no other workspace crate (`kms-types`, `kms-core`, `kms-admin`, ...),
/// so the binary uses the API downstream users get.
pub(crate) fn check_cli_uses_the_facade_only() -> Result<(), String> {
    let args = ["tree", "-p", "kms-cli", "--all-features", "--depth", "1", "-e", "normal", "--prefix", "none"];
    let tree = cargo_output(&[&args[..], &["--format", "{p}"]].concat())?;
    let bypassing = workspace_crates_besides_the_facade(&tree);
    if !bypassing.is_empty() {
        return Err(format!(
            "layering: `kms-cli` depends directly on {}: it must use the facade `kms` only; see `cargo tree -p kms-cli --depth 1 -e normal`",
            bypassing.join(", ")
        ));
    }
    eprintln!("layering: kms-cli depends on the workspace through the facade `kms` only");
    // The S3 pipeline's own dependencies come only with kms-core's `sse` feature: kms-core
    // itself names neither without it (kms-types uses serde_json for backend settings).
    let core = cargo_output(&[
        "tree", "-p", "kms-core", "-e", "normal", "--depth", "1", "--prefix", "none", "--format", "{p}",
    ])?;
    for crate_name in ["md-5", "serde_json"] {
        if core.lines().any(|line| line.split_whitespace().next() == Some(crate_name)) {
            return Err(format!("layering: `kms-core` without feature `sse` depends directly on `{crate_name}`"));
        }
    }
    eprintln!("layering: kms-core without `sse` names neither md-5 nor serde_json");
    Ok(())
}

/// The direct dependencies (below the first line, the package itself) named `kms-*` other
/// than the facade, in a `cargo tree --depth 1 --prefix none --format {p}` listing.
fn workspace_crates_besides_the_facade(tree: &str) -> Vec<String> {
    tree.lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with("kms-"))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_groups_of_crypto_modules_are_found() {
        let source = "use std::io;\nuse ring::rand::SecureRandom;\nfn f() {\n    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b\"k\");\n}\nuse ring::{digest, aead as a};\nuse ring::{\n    hkdf,\n};\n";
        assert_eq!(forbidden_ring_uses(source), [(2, "rand"), (4, "hmac"), (4, "hmac"), (6, "aead"), (7, "hkdf")]);
    }

    #[test]
    fn digest_other_crates_paths_and_comments_are_allowed() {
        let source = "use ring::digest;\nlet d = ring::digest::digest(&ring::digest::SHA256, b\"\");\nlet p = rustls::crypto::ring::default_provider();\nlet s = String::new(); // String::from is not ring::rand\nlet u = \"https://x\"; // ring::hmac\n/// ring::aead in prose\n// ring::hkdf too\nuse my_ring::rand;\n";
        assert_eq!(forbidden_ring_uses(source), []);
    }

    #[test]
    fn an_offending_file_outside_kms_crypto_fails_the_check_and_kms_crypto_itself_passes() {
        let root = std::env::temp_dir().join(format!("xtask-layering-{}", std::process::id()));
        let offender = root.join("crates/kms-thing/src");
        let owner = root.join("crates/kms-crypto/benches");
        fs::create_dir_all(&offender).unwrap();
        fs::create_dir_all(&owner).unwrap();
        fs::write(owner.join("crypto.rs"), "use ring::aead::LessSafeKey; // the raw-ring baseline\n").unwrap();
        fs::write(offender.join("lib.rs"), "use ring::digest;\n").unwrap();
        assert_eq!(check_crypto_confinement(&root), Ok(()));

        fs::write(offender.join("ids.rs"), "fn id() {\n    ring::rand::SystemRandom::new();\n}\n").unwrap();
        let err = check_crypto_confinement(&root).unwrap_err();
        fs::remove_dir_all(&root).unwrap();
        assert!(err.contains("crates/kms-thing/src/ids.rs:2 uses `ring::rand`"), "{err}");
    }

    #[test]
    fn the_workspace_keeps_ring_cryptography_in_kms_crypto() {
        assert_eq!(check_crypto_confinement(&crate::workspace_root()), Ok(()));
    }

    #[test]
    fn only_workspace_crates_other_than_the_facade_are_flagged() {
        let tree = "kms-cli v0.1.0 (/w/crates/kms-cli)\nclap v4.6.9\nkms v0.1.0 (/w/crates/kms)\nkms-core v0.1.0 (/w/crates/kms-core)\nkms-types v0.1.0\n";
        assert_eq!(workspace_crates_besides_the_facade(tree), ["kms-core", "kms-types"]);
        assert!(workspace_crates_besides_the_facade("kms-cli v0.1.0\nkms v0.1.0\nclap v4\n").is_empty());
    }
}
