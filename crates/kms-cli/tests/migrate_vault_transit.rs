//! `kms migrate vault-transit KEY...` against a `kms serve` switched to a real OpenBao: Transit
//! keys planted with the `bao` CLI the way RustFS's Transit backend makes them are adopted with
//! `--commit` only, unsafe ones refused with their reason, a re-run skips, and the adopted key
//! then serves kms's data keys.
//!
//! Needs the OpenBao dev server that `cargo xtask test` starts (`KMS_TEST_VAULT_ADDR`,
//! `KMS_TEST_VAULT_TOKEN`, `KMS_TEST_BAO_BIN`); it fails rather than skips without one.

mod common;

use std::path::Path;

use common::{free_port, kms, ok, ok_json, serve, temp_dir};
use kms_testkit::openbao;
use serde_json::Value;

fn bao(addr: &str, token: &str, args: &[&str]) {
    let bin = openbao::find_bao(&openbao::default_tools_dir()).unwrap().expect("bao: run through `cargo xtask test`");
    openbao::run_bao(&bin, addr, token, args, None).unwrap_or_else(|e| panic!("{e}"));
}

/// `kms --json migrate vault-transit ...`: (exit code, (key, action, detail) per key).
fn adopt(dir: &Path, url: &str, args: &[&str]) -> (Option<i32>, Vec<(String, String, String)>) {
    let mut all = vec!["--json", "migrate", "vault-transit"];
    all.extend_from_slice(args);
    let out = kms(dir, url, &all);
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l.get("key_id").is_some())
        .map(|l| {
            let field = |name: &str| l[name].as_str().unwrap().to_owned();
            (field("key_id"), field("action"), field("detail"))
        })
        .collect();
    (out.status.code(), lines)
}

#[test]
fn transit_keys_of_another_tool_are_adopted_explicitly_refused_when_unsafe_and_skipped_on_a_rerun() {
    let addr = std::env::var("KMS_TEST_VAULT_ADDR").expect("KMS_TEST_VAULT_ADDR: run through `cargo xtask test`");
    let token = std::env::var("KMS_TEST_VAULT_TOKEN").expect("KMS_TEST_VAULT_TOKEN: run through `cargo xtask test`");
    let dir = temp_dir("migrate-vault-transit");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (server, _) = serve(&dir, port, &[]);
    let run = format!("{}-{port}", std::process::id());
    std::fs::write(
        dir.join("vault.toml"),
        format!(
            "backend_type = \"vault\"\naddress = \"{addr}\"\nkey_path_prefix = \"kms-cli-adopt/{run}\"\n\n[auth_method]\ntype = \"token\"\ntoken = \"{token}\"\n"
        ),
    )
    .unwrap();
    ok(&dir, &url, &["service", "reconfigure", "vault.toml"]);

    let good = format!("rustfs-good-{run}");
    let exportable = format!("rustfs-exportable-{run}");
    bao(&addr, &token, &["write", "-f", &format!("transit/keys/{good}"), "type=aes256-gcm96"]);
    bao(&addr, &token, &["write", &format!("transit/keys/{exportable}"), "type=aes256-gcm96", "exportable=true"]);

    // Dry run: one line per key, nothing adopted.
    let (code, lines) = adopt(&dir, &url, &[&good, &exportable]);
    assert_eq!(code, Some(1), "a refused key makes the run fail: {lines:?}");
    assert_eq!((lines[0].0.as_str(), lines[0].1.as_str()), (good.as_str(), "adopt"));
    assert_eq!((lines[1].0.as_str(), lines[1].1.as_str()), (exportable.as_str(), "refused"));
    assert!(lines[1].2.starts_with("exportable"), "{lines:?}");
    let listed = ok_json(&dir, &url, &["key", "list"]);
    assert!(listed["keys"].as_array().unwrap().is_empty(), "{listed}");

    let (code, lines) = adopt(&dir, &url, &[&good, "--commit", "--description", "from RustFS", "--tag", "team=s3"]);
    assert_eq!(code, Some(0), "{lines:?}");
    assert_eq!(lines[0].1, "adopted");
    let meta = &ok_json(&dir, &url, &["key", "describe", &good])["key_metadata"];
    assert_eq!((meta["key_state"].as_str(), meta["origin"].as_str()), (Some("enabled"), Some("kms")));
    assert_eq!(meta["description"], "from RustFS");
    assert_eq!(meta["tags"]["team"], "s3");
    let data_key = ok_json(&dir, &url, &["datakey", &good, "--context", "bucket=photos"]);
    assert_eq!(data_key["key_id"], good.as_str());

    // Re-run: skipped; the refused key stays refused.
    let (code, lines) = adopt(&dir, &url, &[&good, &exportable, "--commit"]);
    assert_eq!(code, Some(1));
    assert_eq!(lines[0].1, "skip");
    assert_eq!(lines[1].1, "refused");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
