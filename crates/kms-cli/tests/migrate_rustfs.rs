//! `kms migrate rustfs-local` against a `kms serve` on the local backend, with the RustFS key
//! directory written by the independent Python fixture generator
//! (`crates/kms-crypto/tests/fixtures/rustfs/generate.py`).

mod common;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{free_port, kms, ok_json, serve, temp_dir};
use kms::crypto::envelope::{self, Binding};
use kms::crypto::keys::KeyEncryptionKey;
use kms::types::EncryptionContext;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kms-crypto/tests/fixtures/rustfs")
}

fn manifest() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("manifest.json")).unwrap()).unwrap()
}

/// Copies a fixture directory (with its dot files) into `dir`.
fn copy_dir(name: &str, dir: &Path) -> PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(fixtures().join(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    to
}

/// `kms --json migrate rustfs-local ...`: (exit success, one JSON object per key, stderr).
fn migrate(dir: &Path, url: &str, extra: &[&str]) -> (bool, Vec<Value>, String) {
    let mut args = vec!["--json", "migrate", "rustfs-local"];
    args.extend_from_slice(extra);
    let out = kms(dir, url, &args);
    let lines = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (out.status.success(), lines, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn actions(lines: &[Value]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter(|l| l.get("key_id").is_some())
        .map(|l| (l["key_id"].as_str().unwrap().to_owned(), l["action"].as_str().unwrap().to_owned()))
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// A data key from the server under `key_id`, opened here with the material the Python
/// generator wrote into RustFS's record: the server holds exactly that material.
fn assert_server_holds_material(dir: &Path, url: &str, key_id: &str, material_hex: &str) {
    let answer = ok_json(dir, url, &["datakey", key_id, "--context", "app=migration"]);
    let plaintext = STANDARD.decode(answer["plaintext_key"].as_str().unwrap()).unwrap();
    let blob = STANDARD.decode(answer["ciphertext_blob"].as_str().unwrap()).unwrap();
    // Local ciphertext blob: "KLC" ‖ 0x01 ‖ u16 id length ‖ id ‖ u32 version ‖ envelope.
    let id_len = usize::from(u16::from_be_bytes([blob[4], blob[5]]));
    assert_eq!(&blob[6..6 + id_len], key_id.as_bytes());
    assert_eq!(&blob[6 + id_len..10 + id_len], &1u32.to_be_bytes());
    let context: EncryptionContext = [("app".to_owned(), "migration".to_owned())].into();
    let kek = KeyEncryptionKey::from_bytes(&unhex(material_hex)).unwrap();
    let binding = Binding { master_key_id: key_id, master_key_version: 1, context: &context };
    let opened = envelope::open(&kek, &blob[10 + id_len..], &binding).unwrap();
    assert_eq!(&opened[..], &plaintext[..], "{key_id}");
}

#[test]
fn a_rustfs_key_directory_migrates_with_ids_states_metadata_and_material_and_a_rerun_skips() {
    let dir = temp_dir("migrate-rustfs");
    let (server, _) = serve(&dir, free_port(), &[]);
    let url = server.url.clone();
    let from = copy_dir("keydir", &dir);
    let from = from.to_str().unwrap();
    let manifest = manifest();
    std::fs::write(dir.join("rustfs.master"), format!("{}\n", manifest["master_key"].as_str().unwrap())).unwrap();
    let common = ["--from", from, "--master-key-file", "rustfs.master"];
    let expected = manifest["keys"].as_object().unwrap();

    // Dry run: every key would be imported; nothing is.
    let (success, lines, stderr) = migrate(&dir, &url, &common);
    assert!(success, "{stderr}");
    let planned = actions(&lines);
    assert_eq!(planned.len(), expected.len());
    assert!(planned.iter().all(|(_, action)| action == "import"), "{planned:?}");
    assert_eq!(lines.last().unwrap()["dry_run"], true);
    assert_eq!(ok_json(&dir, &url, &["key", "list"])["keys"].as_array().unwrap().len(), 0);

    // A key that exists in kms under one of the ids is never overwritten.
    ok_json(&dir, &url, &["key", "create", "--name", "default"]);
    let (success, lines, _) = migrate(&dir, &url, &[&common[..], &["--commit"]].concat());
    assert!(!success, "a conflict makes the run fail");
    for (key_id, action) in actions(&lines) {
        assert_eq!(action, if key_id == "default" { "refused" } else { "imported" }, "{key_id}");
    }
    assert_eq!(ok_json(&dir, &url, &["key", "describe", "default"])["key_metadata"]["origin"], "kms");

    for (key_id, want) in expected.iter().filter(|(id, _)| *id != "default") {
        let meta = &ok_json(&dir, &url, &["key", "describe", key_id])["key_metadata"];
        let state = match want["status"].as_str().unwrap() {
            "Active" => "enabled",
            "Disabled" => "disabled",
            _ => "pending_deletion",
        };
        assert_eq!(meta["key_state"], state, "{key_id}");
        assert_eq!(meta["origin"], "external", "{key_id}");
        assert_eq!(meta["current_version"], 1, "{key_id}");
        assert_eq!(meta["description"], want["description"], "{key_id}");
        assert_eq!(meta.get("tags").cloned().unwrap_or(Value::Object(Default::default())), want["tags"], "{key_id}");
        assert_eq!(meta["deletion_date"].is_null(), want["deletion_date"].is_null(), "{key_id}");
    }
    assert_eq!(
        ok_json(&dir, &url, &["key", "describe", "app-data"])["key_metadata"]["creation_date"],
        "2026-12-02T10:54:59.308289095Z"
    );
    for key_id in ["app-data", "legacy-sha256", "dev-plain", "no-version-field"] {
        assert_server_holds_material(&dir, &url, key_id, expected[key_id]["material_hex"].as_str().unwrap());
    }

    // Resumable: a re-run skips every key it imported and still refuses the conflict.
    let (_, lines, _) = migrate(&dir, &url, &[&common[..], &["--commit"]].concat());
    for (key_id, action) in actions(&lines) {
        let want = if key_id == "default" { "refused" } else { "skip" };
        assert_eq!(action, want, "{key_id}: {lines:?}");
    }
}

#[test]
fn a_wrong_master_key_or_none_refuses_sealed_keys_and_imports_nothing_of_them() {
    let dir = temp_dir("migrate-rustfs-wrong");
    let (server, _) = serve(&dir, free_port(), &[]);
    let url = server.url.clone();
    let from = copy_dir("keydir", &dir);
    std::fs::write(dir.join("wrong.master"), "not the master key").unwrap();
    let (success, lines, stderr) =
        migrate(&dir, &url, &["--from", from.to_str().unwrap(), "--master-key-file", "wrong.master", "--commit"]);
    assert!(!success);
    assert!(stderr.contains("not migrated"), "{stderr}");
    for (key_id, action) in actions(&lines) {
        let plaintext = ["dev-plain", "legacy-plain"].contains(&key_id.as_str());
        assert_eq!(action, if plaintext { "imported" } else { "refused" }, "{key_id}");
    }
    let detail = lines.iter().find(|l| l["key_id"] == "app-data").unwrap()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("did not open"), "{detail}");
    let keys = ok_json(&dir, &url, &["key", "list"])["keys"].as_array().unwrap().len();
    assert_eq!(keys, 2);

    // A directory RustFS only ever used without a master key needs none.
    let plain = copy_dir("plaindir", &dir);
    let (success, lines, stderr) = migrate(&dir, &url, &["--from", plain.to_str().unwrap(), "--commit"]);
    assert!(success, "{stderr}");
    assert_eq!(actions(&lines), [("dev-one".into(), "imported".into()), ("dev-two".into(), "imported".into())]);

    // Without a master key, the sealed records of the first directory are refused.
    let (success, lines, _) = migrate(&dir, &url, &["--from", from.to_str().unwrap()]);
    assert!(!success);
    let app = lines.iter().find(|l| l["key_id"] == "app-data").unwrap();
    assert_eq!(app["action"], "refused");
}

#[test]
fn an_interrupted_rustfs_restore_or_a_broken_record_is_reported() {
    let dir = temp_dir("migrate-rustfs-broken");
    let (server, _) = serve(&dir, free_port(), &[]);
    let url = server.url.clone();
    let from = copy_dir("plaindir", &dir);
    let record = std::fs::read(from.join("dev-one.key")).unwrap();
    std::fs::write(from.join("dev-one.key"), &record[..record.len() / 2]).unwrap();
    let (success, lines, _) = migrate(&dir, &url, &["--from", from.to_str().unwrap(), "--commit"]);
    assert!(!success);
    assert_eq!(actions(&lines), [("dev-one".into(), "refused".into()), ("dev-two".into(), "imported".into())]);

    std::fs::write(from.join(".restore-commit.json"), b"{}").unwrap();
    let out = kms(&dir, &url, &["migrate", "rustfs-local", "--from", from.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("restore was interrupted"));
}

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

#[test]
fn rustfs_envelopes_decrypt_after_migration_with_their_exact_context_and_re_encrypt_to_kms_blobs() {
    let dir = temp_dir("migrate-rustfs-envelopes");
    let (server, _) = serve(&dir, free_port(), &[]);
    let url = server.url.clone();
    let from = copy_dir("keydir", &dir);
    std::fs::write(dir.join("rustfs.master"), manifest()["master_key"].as_str().unwrap()).unwrap();
    // `default` is a kms-made key: RustFS envelopes naming it are refused below.
    ok_json(&dir, &url, &["key", "create", "--name", "default"]);
    migrate(&dir, &url, &["--from", from.to_str().unwrap(), "--master-key-file", "rustfs.master", "--commit"]);
    ok_json(&dir, &url, &["key", "enable", "retired"]);

    let cases: Vec<Value> = serde_json::from_slice(&std::fs::read(fixtures().join("envelopes.json")).unwrap()).unwrap();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let blob = STANDARD.encode(case["envelope"].as_str().unwrap());
        let context = &case["context"];
        let (status, answer) = post(
            &dir,
            &url,
            "/kms/v1/decrypt",
            &serde_json::json!({"ciphertext_blob": blob, "encryption_context": context}),
        );
        if case["master_key_id"] == "default" {
            assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("crypto_error")), "{name}: {answer}");
            continue;
        }
        assert_eq!(status, 200, "{name}: {answer}");
        assert_eq!(answer["key_id"], case["master_key_id"]);
        assert_eq!(answer["key_version"], 1);
        let plaintext = STANDARD.decode(answer["plaintext"].as_str().unwrap()).unwrap();
        assert_eq!(plaintext, unhex(case["plaintext_hex"].as_str().unwrap()), "{name}");

        // The context must be the envelope's, in full: no skip for an empty request.
        let mut wrong = context.clone();
        wrong["extra"] = "pair".into();
        for context in [wrong, serde_json::json!({})].iter().filter(|c| *c != context) {
            let request = serde_json::json!({"ciphertext_blob": blob, "encryption_context": context});
            let (status, answer) = post(&dir, &url, "/kms/v1/decrypt", &request);
            assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("crypto_error")), "{name}: {answer}");
        }

        // re-encrypt moves it to a kms blob under the same key, which decrypts to the same bytes.
        let request = serde_json::json!({"ciphertext_blob": blob, "source_encryption_context": context});
        let (status, moved) = post(&dir, &url, "/kms/v1/re-encrypt", &request);
        assert_eq!(status, 200, "{name}: {moved}");
        let kms_blob = STANDARD.decode(moved["ciphertext_blob"].as_str().unwrap()).unwrap();
        assert_eq!(&kms_blob[..3], b"KLC");
        let request = serde_json::json!({"ciphertext_blob": moved["ciphertext_blob"], "encryption_context": context});
        let (status, answer) = post(&dir, &url, "/kms/v1/decrypt", &request);
        assert_eq!(status, 200, "{name}: {answer}");
        assert_eq!(STANDARD.decode(answer["plaintext"].as_str().unwrap()).unwrap(), plaintext);
    }

    // A disabled migrated key refuses like any key; a tampered envelope is an opaque crypto error.
    ok_json(&dir, &url, &["key", "disable", "app-data"]);
    let blob = STANDARD.encode(cases[0]["envelope"].as_str().unwrap());
    let (status, answer) = post(&dir, &url, "/kms/v1/decrypt", &serde_json::json!({"ciphertext_blob": blob}));
    assert_eq!((status, answer["error"]["code"].as_str()), (409, Some("invalid_key_state")), "{answer}");
    ok_json(&dir, &url, &["key", "enable", "app-data"]);
    let tampered = cases[0]["envelope"].as_str().unwrap().replacen("\"encrypted_key\":[", "\"encrypted_key\":[1,", 1);
    let request = serde_json::json!({"ciphertext_blob": STANDARD.encode(tampered)});
    let (status, answer) = post(&dir, &url, "/kms/v1/decrypt", &request);
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("crypto_error")), "{answer}");
}
