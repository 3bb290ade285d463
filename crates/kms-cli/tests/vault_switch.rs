//! Dynamic configuration end to end: `kms serve` starts on the local backend, switches to a
//! real OpenBao over the API without a restart, keeps working, resumes Vault after a restart
//! (the token sealed in the saved state), and switches back to local.
//!
//! Needs the OpenBao dev server that `cargo xtask test` starts (`KMS_TEST_VAULT_ADDR`,
//! `KMS_TEST_VAULT_TOKEN`); like the Vault backend's own tests, it fails rather than skips
//! without one.

mod common;

use common::{free_port, ok, ok_json, serve, temp_dir};

#[test]
fn switch_from_local_to_vault_and_back_without_a_restart() {
    let addr = std::env::var("KMS_TEST_VAULT_ADDR").expect("KMS_TEST_VAULT_ADDR: run through `cargo xtask test`");
    let token = std::env::var("KMS_TEST_VAULT_TOKEN").expect("KMS_TEST_VAULT_TOKEN: run through `cargo xtask test`");
    let dir = temp_dir("vault-switch");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    std::fs::write(dir.join("plain.txt"), b"local then vault").unwrap();

    let (server, _) = serve(&dir, port, &[]);
    assert_eq!(ok_json(&dir, &url, &["status"])["backend"], "local");
    ok(&dir, &url, &["key", "create", "--name", "local-1"]);
    ok(&dir, &url, &["encrypt", "--key", "local-1", "-i", "plain.txt", "-o", "local.kms"]);

    // Switch to Vault. Keys live under a per-run prefix so runs do not see each other.
    let prefix = format!("kms-cli-test/{}", std::process::id());
    let request = format!(
        "backend_type = \"vault\"\naddress = \"{addr}\"\nkey_path_prefix = \"{prefix}\"\n\n[auth_method]\ntype = \"token\"\ntoken = \"{token}\"\n"
    );
    std::fs::write(dir.join("vault.toml"), request).unwrap();
    let switched = ok_json(&dir, &url, &["service", "reconfigure", "vault.toml"]);
    assert_eq!(switched["status"]["state"], "running");
    assert_eq!(switched["persisted"], true);
    let status = ok_json(&dir, &url, &["status"]);
    assert_eq!((status["backend"].as_str(), status["healthy"].as_bool()), (Some("vault"), Some(true)));
    let key = format!("vault-{}", std::process::id());
    ok(&dir, &url, &["key", "create", "--name", &key]);
    ok(&dir, &url, &["encrypt", "--key", &key, "--context", "a=b", "-i", "plain.txt", "-o", "vault.kms"]);
    ok(&dir, &url, &["decrypt", "--context", "a=b", "-i", "vault.kms", "-o", "vault.out"]);
    assert_eq!(std::fs::read(dir.join("vault.out")).unwrap(), b"local then vault");

    // The saved state holds the token sealed, and the config endpoint shows it redacted.
    let saved = std::fs::read_to_string(dir.join("kms-data/service-state.json")).unwrap();
    assert!(!saved.contains(&token), "token saved in the clear");
    let config = common::kms(&dir, &url, &["--json", "service", "config"]);
    assert!(!String::from_utf8_lossy(&config.stdout).contains(&token));

    // A restart resumes on Vault.
    drop(server);
    let (server, _) = serve(&dir, port, &[]);
    let status = ok_json(&dir, &url, &["status"]);
    assert_eq!((status["backend"].as_str(), status["status"]["state"].as_str()), (Some("vault"), Some("running")));
    ok(&dir, &url, &["decrypt", "--context", "a=b", "-i", "vault.kms", "-o", "vault2.out"]);

    // And back to the local key store, whose keys are where they were.
    let local = format!(
        "backend_type = \"local\"\nkey_dir = \"{}\"\n\n[master_key]\ntype = \"file\"\npath = \"{}\"\n",
        dir.join("kms-data/keys").display(),
        dir.join("kms-data/master.key").display()
    );
    std::fs::write(dir.join("local.toml"), local).unwrap();
    ok(&dir, &url, &["service", "reconfigure", "local.toml"]);
    assert_eq!(ok_json(&dir, &url, &["status"])["backend"], "local");
    ok(&dir, &url, &["decrypt", "-i", "local.kms", "-o", "local.out"]);
    assert_eq!(std::fs::read(dir.join("local.out")).unwrap(), b"local then vault");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
