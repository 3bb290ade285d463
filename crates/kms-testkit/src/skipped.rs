//! The one line a plain `cargo test` prints about the test targets a feature left out.
//!
//! A crate lists its live tests (those that need an OpenBao server, or another outside
//! program) as `[[test]]` targets with `required-features = ["live-vault"]`; Cargo then builds
//! and runs them only with that feature (`cargo xtask test` turns it on and starts the server).
//! The crate's always-run `harness = false` test `live_vault_skipped` calls [`report`], so a
//! run without the feature says what it did not run instead of passing silently.

use std::path::Path;

/// The names of the `[[test]]` targets of the manifest `cargo_toml` that require `feature`.
pub fn targets_requiring(cargo_toml: &str, feature: &str) -> Vec<String> {
    let wanted = format!("\"{feature}\"");
    let mut targets = Vec::new();
    // Each `[[test]]` table runs until the next table header.
    for table in cargo_toml.split("\n[").filter(|t| t.starts_with("[test]]")) {
        let value = |key: &str| {
            table.lines().find_map(|line| {
                let (k, v) = line.split_once('=')?;
                (k.trim() == key).then(|| v.trim().to_owned())
            })
        };
        let requires = value("required-features").is_some_and(|v| v.contains(&wanted));
        if let (true, Some(name)) = (requires, value("name")) {
            targets.push(name.trim_matches('"').to_owned());
        }
    }
    targets
}

/// The line to print for the package at `manifest_dir` when `feature` is off (`None` when it
/// is on, or when no target needs it).
pub fn notice(manifest_dir: &Path, feature: &str, enabled: bool) -> Option<String> {
    if enabled {
        return None;
    }
    let manifest = std::fs::read_to_string(manifest_dir.join("Cargo.toml")).ok()?;
    let package = manifest
        .lines()
        .find_map(|l| l.strip_prefix("name = ").map(|n| n.trim_matches('"').to_owned()))
        .unwrap_or_else(|| manifest_dir.display().to_string());
    let targets = targets_requiring(&manifest, feature);
    if targets.is_empty() {
        return None;
    }
    Some(format!(
        "{package}: skipped {} test target(s) that need feature `{feature}` ({}); `cargo xtask test` runs them",
        targets.len(),
        targets.join(", ")
    ))
}

/// Prints [`notice`] on standard error (`harness = false` tests are not captured).
pub fn report(manifest_dir: &str, feature: &str, enabled: bool) {
    if let Some(line) = notice(Path::new(manifest_dir), feature, enabled) {
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"[package]
name = "demo"

[[test]]
name = "live"
required-features = ["live-vault"]

[[test]]
name = "offline"

[[test]]
name = "both"
required-features = ["vault", "live-vault"]

[[bench]]
name = "bench"
required-features = ["live-vault"]
"#;

    #[test]
    fn only_test_targets_that_require_the_feature_are_listed() {
        assert_eq!(targets_requiring(MANIFEST, "live-vault"), ["live", "both"]);
        assert_eq!(targets_requiring(MANIFEST, "vault"), ["both"]);
        assert!(targets_requiring(MANIFEST, "other").is_empty());
    }

    #[test]
    fn the_notice_names_the_package_and_targets_only_when_the_feature_is_off() {
        let dir = std::env::temp_dir().join(format!("kms-testkit-skipped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Cargo.toml"), MANIFEST).unwrap();
        let line = notice(&dir, "live-vault", false).unwrap();
        assert!(line.starts_with("demo: skipped 2 test target(s)"), "{line}");
        assert!(line.contains("(live, both)"), "{line}");
        assert_eq!(notice(&dir, "live-vault", true), None);
        assert_eq!(notice(&dir, "other", false), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
