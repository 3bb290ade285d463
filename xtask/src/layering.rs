//! Layering rules, checked with `cargo tree` (the wgpu pattern): a crate low in the stack must
//! not pull in what belongs higher up, whatever features its dependents turn on.

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

/// Fails if any rule is broken, naming the crate and the path that pulls it in.
pub(crate) fn check() -> Result<(), String> {
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
    // The S3 pipeline's own dependencies come only with kms-core's `sse` feature (base64 and
    // serde remain, through kms-types).
    let core = cargo_output(&["tree", "-p", "kms-core", "-e", "normal", "--prefix", "none", "--format", "{p}"])?;
    for crate_name in ["md-5", "serde_json"] {
        if core.lines().any(|line| line.split_whitespace().next() == Some(crate_name)) {
            return Err(format!("layering: `kms-core` without feature `sse` depends on `{crate_name}`"));
        }
    }
    eprintln!("layering: kms-core without `sse` is free of md-5 and serde_json");
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
    fn only_workspace_crates_other_than_the_facade_are_flagged() {
        let tree = "kms-cli v0.1.0 (/w/crates/kms-cli)\nclap v4.6.9\nkms v0.1.0 (/w/crates/kms)\nkms-core v0.1.0 (/w/crates/kms-core)\nkms-types v0.1.0\n";
        assert_eq!(workspace_crates_besides_the_facade(tree), ["kms-core", "kms-types"]);
        assert!(workspace_crates_besides_the_facade("kms-cli v0.1.0\nkms v0.1.0\nclap v4\n").is_empty());
    }
}
