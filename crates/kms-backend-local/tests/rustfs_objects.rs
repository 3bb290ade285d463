//! Objects RustFS wrote, read through the SSE pipeline's read-only path
//! (`EncryptionService::decrypt_rustfs_object`) on the local backend after a `kms migrate`-style
//! import of their key: the data key is unwrapped by the backend, never by the test. The
//! fixtures are kms-crypto's, written by an independent Python implementation of the formats.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use kms_backend_local::LocalBackend;
use kms_core::backends::KmsBackend;
use kms_core::encryption::rustfs::{RustfsBodyFormat, RustfsObjectRequest};
use kms_core::encryption::service::EncryptionService;
use kms_core::manager::{KmsManager, ManagerOptions};
use kms_crypto::rustfs::stream::StreamPart;
use kms_types::error::KmsError;
use kms_types::import::ImportKeyRequest;
use kms_types::secret::SecretBytes;
use kms_types::types::{DisableKeyRequest, KeyState, KeyUsage};
use serde_json::Value;
use time::OffsetDateTime;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kms-crypto/tests/fixtures/rustfs")
}

fn manifest() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("manifest.json")).unwrap()).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + 3) % 251) as u8).collect()
}

/// `<dir>/<name>.headers.json` and `<dir>/<name>.body`.
fn object(dir: &str, name: &str) -> (BTreeMap<String, String>, Vec<u8>) {
    let dir = fixtures().join(dir);
    let headers = serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.headers.json"))).unwrap()).unwrap();
    (headers, std::fs::read(dir.join(format!("{name}.body"))).unwrap())
}

/// What `kms migrate rustfs-local` sends for `key_id`: its material, as the Python side knows it.
fn import_request(key_id: &str) -> ImportKeyRequest {
    let material = unhex(manifest()["keys"][key_id]["material_hex"].as_str().unwrap());
    ImportKeyRequest {
        key_id: key_id.into(),
        material: SecretBytes::new(material),
        key_state: KeyState::Enabled,
        key_usage: KeyUsage::EncryptDecrypt,
        description: None,
        tags: BTreeMap::new(),
        creation_date: OffsetDateTime::from_unix_timestamp(1_790_848_800).unwrap(),
        deletion_date: None,
    }
}

/// A service over a fresh local backend holding the migrated `app-data` key.
async fn service(tmp: &tempfile::TempDir) -> (EncryptionService, Arc<LocalBackend>) {
    let backend = Arc::new(open(&keys_dir(tmp)).await);
    backend.import_key(import_request("app-data")).await.unwrap();
    let manager = KmsManager::with_options(backend.clone(), ManagerOptions::default());
    (EncryptionService::new(Arc::new(manager)), backend)
}

fn request<'a>(
    object_key: &'a str,
    headers: &'a BTreeMap<String, String>,
    format: RustfsBodyFormat<'a>,
) -> RustfsObjectRequest<'a> {
    RustfsObjectRequest { bucket: "photos", object_key, headers, format }
}

fn multipart_parts(name: &str) -> (String, Vec<StreamPart>) {
    let manifest = manifest();
    let case = manifest["multipart"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap().clone();
    let parts = case["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| StreamPart {
            number: p["number"].as_u64().unwrap() as u32,
            plaintext_len: p["size"].as_u64().unwrap(),
        })
        .collect();
    (case["object_key"].as_str().unwrap().to_owned(), parts)
}

fn is_crypto(err: &KmsError) -> bool {
    matches!(err, KmsError::Crypto { .. })
}

fn is_invalid(err: &KmsError) -> bool {
    matches!(err, KmsError::InvalidRequest { field, .. } if field == "rustfs")
}

#[tokio::test]
async fn whole_objects_and_streams_of_every_size_read_through_the_backend() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, _) = service(&tmp).await;
    for size in [0usize, 1, 8191, 8192, 8193, 100_000] {
        let key = format!("dir/object-{size}.bin");
        let (headers, body) = object("objects", &format!("object-{size}"));
        let plaintext =
            service.decrypt_rustfs_object(&body, request(&key, &headers, RustfsBodyFormat::WholeObject)).await;
        assert_eq!(&plaintext.unwrap_or_else(|e| panic!("object-{size}: {e}"))[..], pattern(size));

        let key = format!("dir/stream-{size}.bin");
        let (headers, body) = object("streams", &format!("stream-{size}"));
        let format = RustfsBodyFormat::Stream { plaintext_len: size as u64 };
        let plaintext = service.decrypt_rustfs_object(&body, request(&key, &headers, format)).await;
        assert_eq!(&plaintext.unwrap_or_else(|e| panic!("stream-{size}: {e}"))[..], pattern(size));
    }
    for (name, size) in [("stream-short-reads", 20_000), ("stream-single-nonce", 3 * 8192 + 17)] {
        let (headers, body) = object("streams", name);
        let format = RustfsBodyFormat::Stream { plaintext_len: size as u64 };
        let key = format!("dir/{name}.bin");
        let plaintext = service.decrypt_rustfs_object(&body, request(&key, &headers, format)).await;
        assert_eq!(&plaintext.unwrap()[..], pattern(size), "{name}");
    }
}

#[tokio::test]
async fn multipart_streams_read_with_their_part_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, _) = service(&tmp).await;
    for case in manifest()["multipart"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (key, parts) = multipart_parts(name);
        let (headers, body) = object("multipart", name);
        let format = RustfsBodyFormat::MultipartStream { parts: &parts };
        let plaintext = service.decrypt_rustfs_object(&body, request(&key, &headers, format)).await;
        let total = parts.iter().map(|p| p.plaintext_len).sum::<u64>() as usize;
        assert_eq!(&plaintext.unwrap_or_else(|e| panic!("{name}: {e}"))[..], pattern(total), "{name}");
    }
    // Parts swapped, a part dropped, a wrong list; a stored size that disagrees with the list.
    let (key, parts) = multipart_parts("multipart-3");
    let (headers, body) = object("multipart", "multipart-3");
    let format = RustfsBodyFormat::MultipartStream { parts: &parts[..2] };
    let err = service.decrypt_rustfs_object(&body, request(&key, &headers, format)).await.unwrap_err();
    assert!(is_invalid(&err), "{err:?}");
    let mut wrong = parts.clone();
    wrong[0].plaintext_len -= 1;
    wrong[2].plaintext_len += 1;
    let format = RustfsBodyFormat::MultipartStream { parts: &wrong };
    let err = service.decrypt_rustfs_object(&body, request(&key, &headers, format)).await.unwrap_err();
    assert!(is_crypto(&err), "{err:?}");
    let format = RustfsBodyFormat::MultipartStream { parts: &parts };
    let err = service.decrypt_rustfs_object(&body[..body.len() - 8], request(&key, &headers, format)).await;
    assert!(is_crypto(&err.unwrap_err()));
}

#[tokio::test]
async fn tampered_truncated_extended_or_misplaced_objects_are_refused_opaquely() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, _) = service(&tmp).await;
    let (headers, body) = object("objects", "object-8193");
    let whole = |key: &'static str, headers: &'static BTreeMap<String, String>| {
        request(key, headers, RustfsBodyFormat::WholeObject)
    };
    let headers: &'static BTreeMap<String, String> = Box::leak(Box::new(headers));
    let mut flipped = body.clone();
    flipped[100] ^= 1;
    let mut longer = body.clone();
    longer.push(0);
    for (what, bytes) in [("flipped", &flipped[..]), ("truncated", &body[..body.len() - 1]), ("extended", &longer[..])]
    {
        let err = service.decrypt_rustfs_object(bytes, whole("dir/object-8193.bin", headers)).await.unwrap_err();
        assert!(is_crypto(&err), "{what}: {err:?}");
    }
    // Read as another object: its context names photos/dir/object-8193.bin.
    let err = service.decrypt_rustfs_object(&body, whole("dir/elsewhere.bin", headers)).await.unwrap_err();
    assert!(is_crypto(&err), "{err:?}");
    // A whole object is not a stream.
    let format = RustfsBodyFormat::Stream { plaintext_len: 8193 };
    let err = service.decrypt_rustfs_object(&body, request("dir/object-8193.bin", headers, format)).await;
    assert!(is_invalid(&err.unwrap_err()));

    let (mut stream_headers, stream_body) = object("streams", "stream-8193");
    let key = "dir/stream-8193.bin";
    let format = |len| RustfsBodyFormat::Stream { plaintext_len: len };
    for (what, bytes, len) in [
        ("cut", &stream_body[..stream_body.len() - 8], 8193),
        ("wrong length", &stream_body[..], 8192),
        ("extended", &[&stream_body[..], &[0u8][..]].concat()[..], 8193),
    ] {
        let err = service.decrypt_rustfs_object(bytes, request(key, &stream_headers, format(len))).await.unwrap_err();
        assert!(is_crypto(&err), "{what}: {err:?}");
    }
    // Another object's stream: the bucket pair of the context no longer matches the envelope's.
    let err = service
        .decrypt_rustfs_object(&stream_body, request("dir/stream-8192.bin", &stream_headers, format(8193)))
        .await
        .unwrap_err();
    assert!(is_crypto(&err), "{err:?}");
    // The stored context altered; a stored size that disagrees; a missing IV.
    let mut altered = stream_headers.clone();
    altered
        .insert("x-rustfs-encryption-context".into(), r#"{"tenant":"b","photos":"photos/dir/stream-8193.bin"}"#.into());
    let err = service.decrypt_rustfs_object(&stream_body, request(key, &altered, format(8193))).await.unwrap_err();
    assert!(is_crypto(&err), "{err:?}");
    stream_headers.insert("x-rustfs-encryption-original-size".into(), "8000".into());
    let err = service.decrypt_rustfs_object(&stream_body, request(key, &stream_headers, format(8193))).await;
    assert!(is_invalid(&err.unwrap_err()));
    stream_headers.remove("x-rustfs-encryption-original-size");
    stream_headers.remove("x-rustfs-encryption-iv");
    let err = service.decrypt_rustfs_object(&stream_body, request(key, &stream_headers, format(8193))).await;
    assert!(is_invalid(&err.unwrap_err()));
}

#[tokio::test]
async fn the_key_must_be_migrated_enabled_and_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, backend) = service(&tmp).await;
    let (headers, body) = object("streams", "stream-1");
    let read = || {
        service.decrypt_rustfs_object(
            &body,
            request("dir/stream-1.bin", &headers, RustfsBodyFormat::Stream { plaintext_len: 1 }),
        )
    };
    assert_eq!(&read().await.unwrap()[..], pattern(1));
    backend.disable_key(DisableKeyRequest { key_id: "app-data".into() }).await.unwrap();
    let err = read().await.unwrap_err();
    assert!(matches!(err, KmsError::InvalidKeyState { .. }), "{err:?}");

    // Another backend where app-data was imported with other material, or never migrated.
    let other = tempfile::tempdir().unwrap();
    let backend = Arc::new(open(&keys_dir(&other)).await);
    let mut wrong = import_request("app-data");
    wrong.material = SecretBytes::new(vec![9; 32]);
    backend.import_key(wrong).await.unwrap();
    let service = EncryptionService::new(Arc::new(KmsManager::with_options(backend, ManagerOptions::default())));
    let format = RustfsBodyFormat::Stream { plaintext_len: 1 };
    let err = service.decrypt_rustfs_object(&body, request("dir/stream-1.bin", &headers, format)).await.unwrap_err();
    assert!(is_crypto(&err), "{err:?}");
    let empty = tempfile::tempdir().unwrap();
    let backend = Arc::new(open(&keys_dir(&empty)).await);
    let service = EncryptionService::new(Arc::new(KmsManager::with_options(backend, ManagerOptions::default())));
    let err = service.decrypt_rustfs_object(&body, request("dir/stream-1.bin", &headers, format)).await.unwrap_err();
    assert!(matches!(err, KmsError::KeyNotFound { .. }), "{err:?}");
}
