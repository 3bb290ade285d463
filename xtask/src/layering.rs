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
