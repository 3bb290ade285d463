//! `kms migrate rustfs-local` into a `kms serve` on the Vault backend (a real OpenBao): the
//! RustFS key directory written by the independent Python fixture generator
//! (`crates/kms-crypto/tests/fixtures/rustfs/generate.py`) lands in Transit through Transit's
//! import, with ids, states and metadata kept, and a re-run skips.
//!
//! Needs the OpenBao dev server that `cargo xtask test` starts (`KMS_TEST_VAULT_ADDR`,
//! `KMS_TEST_VAULT_TOKEN`); it fails rather than skips without one.

mod common;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{free_port, kms, ok, ok_json, serve, temp_dir};
use kms::crypto::cipher::{Aes256GcmCipher, ObjectCipher as _};
use kms::types::EncryptionContext;
use serde_json::{Value, json};

/// One JSON request to the admin API over a plain TCP connection: (status, body).
fn post(dir: &Path, url: &str, path: &str, body: &Value) -> (u16, Value) {
    use std::io::{Read as _, Write as _};
    let token = std::fs::read_to_string(dir.join("kms-data/admin.token")).unwrap();
    let address = url.strip_prefix("http://").unwrap();
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        token.trim(),
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kms-crypto/tests/fixtures/rustfs")
}

fn copy_dir(name: &str, dir: &Path) -> PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(fixtures().join(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    to
}

fn migrate(dir: &Path, url: &str, extra: &[&str]) -> (bool, Vec<(String, String)>, String) {
    let mut args = vec!["--json", "migrate", "rustfs-local"];
    args.extend_from_slice(extra);
    let out = kms(dir, url, &args);
    let actions = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l.get("key_id").is_some())
        .map(|l| (l["key_id"].as_str().unwrap().to_owned(), l["action"].as_str().unwrap().to_owned()))
        .collect();
    (out.status.success(), actions, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// A data key from the server under `key_id`, opened here with the material of RustFS's
/// record: the Vault blob carries Transit's `vault:v1:base64(nonce ‖ ct ‖ tag)`, AES-256-GCM
/// under the imported material with the canonical context as associated data.
fn assert_transit_holds_material(dir: &Path, url: &str, key_id: &str, material_hex: &str) {
    let answer = ok_json(dir, url, &["datakey", key_id, "--context", "app=migration"]);
    let plaintext = STANDARD.decode(answer["plaintext_key"].as_str().unwrap()).unwrap();
    let blob = String::from_utf8(STANDARD.decode(answer["ciphertext_blob"].as_str().unwrap()).unwrap()).unwrap();
    let transit = blob.strip_prefix(&format!("vault-kms:1:{key_id}:vault:v1:")).expect(&blob);
    let raw = STANDARD.decode(transit).unwrap();
    let (nonce, rest) = raw.split_at(12);
    let (ct, tag) = rest.split_at(rest.len() - 16);
    let context: EncryptionContext = [("app".to_owned(), "migration".to_owned())].into();
    let cipher = Aes256GcmCipher::new(&unhex(material_hex)).unwrap();
    let mut opened = ct.to_vec();
    cipher
        .open_in_place(
            nonce.try_into().unwrap(),
            &kms::crypto::context::canonical_context(&context),
            &mut opened,
            tag.try_into().unwrap(),
        )
        .unwrap();
    assert_eq!(opened, plaintext, "{key_id}");
}

#[test]
fn a_rustfs_key_directory_migrates_into_a_vault_backed_kms_and_a_rerun_skips() {
    let addr = std::env::var("KMS_TEST_VAULT_ADDR").expect("KMS_TEST_VAULT_ADDR: run through `cargo xtask test`");
    let token = std::env::var("KMS_TEST_VAULT_TOKEN").expect("KMS_TEST_VAULT_TOKEN: run through `cargo xtask test`");
    let dir = temp_dir("migrate-rustfs-vault");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (server, _) = serve(&dir, port, &[]);
    let prefix = format!("kms-cli-migrate/{}-{port}", std::process::id());
    std::fs::write(
        dir.join("vault.toml"),
        format!(
            "backend_type = \"vault\"\naddress = \"{addr}\"\nkey_path_prefix = \"{prefix}\"\n\n[auth_method]\ntype = \"token\"\ntoken = \"{token}\"\n"
        ),
    )
    .unwrap();
    ok(&dir, &url, &["service", "reconfigure", "vault.toml"]);
    assert_eq!(ok_json(&dir, &url, &["status"])["backend"], "vault");

    let manifest: Value = serde_json::from_slice(&std::fs::read(fixtures().join("manifest.json")).unwrap()).unwrap();
    let expected = manifest["keys"].as_object().unwrap();
    // Transit key names are per mount, not per kms prefix: the fixture's ids would collide
    // between runs on one server, so each run migrates a copy with its own ids.
    let from = copy_dir("keydir", &dir);
    let suffix = format!("-{}-{port}", std::process::id());
    for key_id in expected.keys() {
        let record = std::fs::read_to_string(from.join(format!("{key_id}.key"))).unwrap();
        let renamed =
            record.replace(&format!("\"key_id\": \"{key_id}\""), &format!("\"key_id\": \"{key_id}{suffix}\""));
        std::fs::remove_file(from.join(format!("{key_id}.key"))).unwrap();
        std::fs::write(from.join(format!("{key_id}{suffix}.key")), renamed).unwrap();
    }
    std::fs::write(dir.join("rustfs.master"), manifest["master_key"].as_str().unwrap()).unwrap();
    let common = ["--from", from.to_str().unwrap(), "--master-key-file", "rustfs.master"];

    let (success, planned, stderr) = migrate(&dir, &url, &common);
    assert!(success, "{stderr}");
    assert_eq!(planned.len(), expected.len());
    assert!(planned.iter().all(|(_, action)| action == "import"), "{planned:?}");

    let (success, done, stderr) = migrate(&dir, &url, &[&common[..], &["--commit"]].concat());
    assert!(success, "{stderr}: {done:?}");
    assert!(done.iter().all(|(_, action)| action == "imported"), "{done:?}");
    for (key_id, want) in expected {
        let id = format!("{key_id}{suffix}");
        let meta = &ok_json(&dir, &url, &["key", "describe", &id])["key_metadata"];
        let state = match want["status"].as_str().unwrap() {
            "Active" => "enabled",
            "Disabled" => "disabled",
            _ => "pending_deletion",
        };
        assert_eq!(meta["key_state"], state, "{id}");
        assert_eq!(meta["origin"], "external", "{id}");
        assert_eq!(meta["description"], want["description"], "{id}");
        assert_eq!(meta["deletion_date"].is_null(), want["deletion_date"].is_null(), "{id}");
    }
    for key_id in ["app-data", "legacy-sha256", "dev-plain"] {
        let material = expected[key_id]["material_hex"].as_str().unwrap();
        assert_transit_holds_material(&dir, &url, &format!("{key_id}{suffix}"), material);
    }

    // RustFS data-key envelopes stay readable: Transit opens them under the imported material
    // (no associated data), with kms's context rule; re-encrypt moves them to Vault blobs.
    ok(&dir, &url, &["key", "enable", &format!("retired{suffix}")]);
    let cases: Vec<Value> = serde_json::from_slice(&std::fs::read(fixtures().join("envelopes.json")).unwrap()).unwrap();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let key_id = format!("{}{suffix}", case["master_key_id"].as_str().unwrap());
        let envelope = case["envelope"].as_str().unwrap().replacen(
            &format!("\"master_key_id\":\"{}\"", case["master_key_id"].as_str().unwrap()),
            &format!("\"master_key_id\":\"{key_id}\""),
            1,
        );
        let blob = STANDARD.encode(&envelope);
        let context = &case["context"];
        let request = json!({"ciphertext_blob": blob, "encryption_context": context});
        let (status, answer) = post(&dir, &url, "/kms/v1/decrypt", &request);
        assert_eq!(status, 200, "{name}: {answer}");
        assert_eq!((answer["key_id"].as_str(), answer["key_version"].as_u64()), (Some(key_id.as_str()), Some(1)));
        let plaintext = STANDARD.decode(answer["plaintext"].as_str().unwrap()).unwrap();
        assert_eq!(plaintext, unhex(case["plaintext_hex"].as_str().unwrap()), "{name}");

        let mut wrong = context.clone();
        wrong["extra"] = "pair".into();
        let (status, answer) =
            post(&dir, &url, "/kms/v1/decrypt", &json!({"ciphertext_blob": blob, "encryption_context": wrong}));
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("crypto_error")), "{name}: {answer}");

        let request = json!({"ciphertext_blob": blob, "source_encryption_context": context});
        let (status, moved) = post(&dir, &url, "/kms/v1/re-encrypt", &request);
        assert_eq!(status, 200, "{name}: {moved}");
        let vault_blob = STANDARD.decode(moved["ciphertext_blob"].as_str().unwrap()).unwrap();
        assert!(vault_blob.starts_with(format!("vault-kms:1:{key_id}:").as_bytes()), "{name}");
        let request = json!({"ciphertext_blob": moved["ciphertext_blob"], "encryption_context": context});
        let (status, answer) = post(&dir, &url, "/kms/v1/decrypt", &request);
        assert_eq!(status, 200, "{name}: {answer}");
        assert_eq!(STANDARD.decode(answer["plaintext"].as_str().unwrap()).unwrap(), plaintext);
    }
    // A tampered envelope is an opaque crypto error.
    let tampered = cases[0]["envelope"]
        .as_str()
        .unwrap()
        .replacen("\"master_key_id\":\"app-data\"", &format!("\"master_key_id\":\"app-data{suffix}\""), 1)
        .replacen("\"encrypted_key\":[", "\"encrypted_key\":[1,", 1);
    let (status, answer) = post(&dir, &url, "/kms/v1/decrypt", &json!({"ciphertext_blob": STANDARD.encode(tampered)}));
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("crypto_error")), "{answer}");

    // Resumable: everything imported is recognised and skipped.
    let (success, again, stderr) = migrate(&dir, &url, &[&common[..], &["--commit"]].concat());
    assert!(success, "{stderr}");
    assert!(again.iter().all(|(_, action)| action == "skip"), "{again:?}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
