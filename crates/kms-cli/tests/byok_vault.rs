//! Bring your own key end to end on OpenBao, over the admin API of a `kms serve` switched to a
//! real OpenBao: the material is generated, wrapped and finally checked by Python's
//! `cryptography` (not kms's code): created with origin `external`, wrapped under the returned
//! RSA public key, imported (into Transit through Transit's own import), and then a data key
//! that kms made is opened in Python from the Transit ciphertext with the raw material
//! (AES-256-GCM, `nonce ‖ ciphertext ‖ tag`, associated data = kms's canonical encoding of the
//! empty context, `docs/formats.md`). Wrong token and different material are refused.
//!
//! Needs the OpenBao dev server that `cargo xtask test` starts (`KMS_TEST_VAULT_ADDR`,
//! `KMS_TEST_VAULT_TOKEN`) and the Python packages it installs into `.tools/python`; it fails
//! rather than skips without them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{free_port, ok, serve, temp_dir};
use serde_json::{Value, json};

/// One JSON request to the admin API over a plain TCP connection: (status, body).
fn request(dir: &Path, url: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
    use std::io::{Read as _, Write as _};
    let token = std::fs::read_to_string(dir.join("kms-data/admin.token")).unwrap();
    let address = url.strip_prefix("http://").unwrap();
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
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

fn python_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/python")
}

/// Runs `script` with `args` under the workspace's Python packages; returns stdout.
fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .env("PYTHONPATH", python_path())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3: run through `cargo xtask test`, which installs .tools/python");
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Prints 32 random bytes as hex (the material, made outside kms).
const GENERATE: &str = "import os; print(os.urandom(32).hex())";

/// argv: material hex, base64 DER SPKI → base64 of RSAES-OAEP-SHA-256(material).
const WRAP: &str = r#"
import base64, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
key = serialization.load_der_public_key(base64.b64decode(sys.argv[2]))
oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
print(base64.b64encode(key.encrypt(bytes.fromhex(sys.argv[1]), oaep)).decode())
"#;

/// argv: material hex, Vault blob (text) → base64 of the data key opened from the Transit
/// ciphertext `vault:v1:base64(nonce ‖ ct ‖ tag)` with AES-256-GCM and the canonical encoding
/// of the empty context as associated data (version byte 1, then a u64 count of 0).
const OPEN: &str = r#"
import base64, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
blob = sys.argv[2]
prefix, transit = blob.split(":vault:v1:", 1)
assert prefix.startswith("vault-kms:1:"), prefix
raw = base64.b64decode(transit)
empty_context = bytes([1]) + bytes(8)
print(base64.b64encode(AESGCM(bytes.fromhex(sys.argv[1])).decrypt(raw[:12], raw[12:], empty_context)).decode())
"#;

#[test]
fn material_made_and_checked_by_python_is_imported_into_transit_and_opens_kms_data_keys() {
    let addr = std::env::var("KMS_TEST_VAULT_ADDR").expect("KMS_TEST_VAULT_ADDR: run through `cargo xtask test`");
    let token = std::env::var("KMS_TEST_VAULT_TOKEN").expect("KMS_TEST_VAULT_TOKEN: run through `cargo xtask test`");
    let dir = temp_dir("byok-vault");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (server, _) = serve(&dir, port, &[]);
    let run = format!("{}-{port}", std::process::id());
    std::fs::write(
        dir.join("vault.toml"),
        format!(
            "backend_type = \"vault\"\naddress = \"{addr}\"\nkey_path_prefix = \"kms-cli-byok/{run}\"\n\n[auth_method]\ntype = \"token\"\ntoken = \"{token}\"\n"
        ),
    )
    .unwrap();
    ok(&dir, &url, &["service", "reconfigure", "vault.toml"]);

    let key_id = format!("byok-{run}");
    let (status, created) =
        request(&dir, &url, "POST", "/kms/v1/keys", &json!({"key_name": key_id, "origin": "external"}));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["key_metadata"]["key_state"], "pending_import");

    let material = python(GENERATE, &[]);
    let parameters = |spec: &str| {
        let (status, answer) = request(
            &dir,
            &url,
            "POST",
            &format!("/kms/v1/keys/{key_id}/import-parameters"),
            &json!({"wrapping_key_spec": spec}),
        );
        assert_eq!(status, 200, "{answer}");
        answer
    };
    let params = parameters("rsa_4096");
    let public_key = params["public_key"].as_str().unwrap();
    let wrapped = python(WRAP, &[&material, public_key]);

    // A wrong token is refused; the key stays pending.
    let mut bad_token = params["import_token"].as_str().unwrap().to_owned();
    bad_token.replace_range(0..4, if bad_token.starts_with("AAAA") { "BBBB" } else { "AAAA" });
    let import_path = format!("/kms/v1/keys/{key_id}/import-material");
    let (status, answer) = request(
        &dir,
        &url,
        "POST",
        &import_path,
        &json!({"encrypted_key_material": wrapped, "import_token": bad_token}),
    );
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_import_token")), "{answer}");

    let (status, answer) = request(
        &dir,
        &url,
        "POST",
        &import_path,
        &json!({"encrypted_key_material": wrapped, "import_token": params["import_token"]}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["key_metadata"]["key_state"], "enabled");

    // A data key kms makes opens in Python from the Transit ciphertext with the raw material.
    let (status, data_key) =
        request(&dir, &url, "POST", &format!("/kms/v1/keys/{key_id}/generate-data-key"), &json!({}));
    assert_eq!(status, 200, "{data_key}");
    let blob = String::from_utf8(
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            data_key["ciphertext_blob"].as_str().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(python(OPEN, &[&material, &blob]), data_key["plaintext_key"].as_str().unwrap());

    // Different material is refused, with its own code.
    let other = python(GENERATE, &[]);
    let params = parameters("rsa_3072");
    let wrapped = python(WRAP, &[&other, params["public_key"].as_str().unwrap()]);
    let (status, answer) = request(
        &dir,
        &url,
        "POST",
        &import_path,
        &json!({"encrypted_key_material": wrapped, "import_token": params["import_token"]}),
    );
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("incorrect_key_material")), "{answer}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
