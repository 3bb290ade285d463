//! Data written by RustFS's own code, not by our description of it: a key directory, two
//! data-key envelopes and whole-helper objects that `rustfs-kms` (rustfs/rustfs at
//! `20d126649`, its local backend with a master key) produced, and streaming objects that its
//! `rio` `EncryptReader` wrote, kept as bytes in `kms-crypto/tests/fixtures/rustfs-written`
//! (see its README). The Python fixtures (`rustfs_objects.rs`) test every format case; these
//! pin that the reader agrees with the writer itself: records open with the Argon2id KEK and
//! keep their states and dates, the envelopes open through the backend under kms's context
//! rule, and objects and streams read through `EncryptionService::decrypt_rustfs_object`, with
//! tampering refused.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use common::*;
use kms_core::backends::KmsBackend;
use kms_core::encryption::rustfs::{RustfsBodyFormat, RustfsObjectRequest};
use kms_core::encryption::service::EncryptionService;
use kms_core::manager::{KmsManager, ManagerOptions};
use kms_crypto::rustfs::record::{KeyRecord, KeyStatus, MasterKeyString, OpenedWith, RecordKeks};
use kms_crypto::rustfs::stream::{StreamPart, decrypt_multipart_stream, decrypt_stream};
use kms_testkit::vectors::hex;
use kms_types::error::KmsError;
use kms_types::import::ImportKeyRequest;
use kms_types::secret::SecretBytes;
use kms_types::types::{DecryptRequest, KeyState, KeyUsage};
use serde_json::Value;

const SIZES: [usize; 6] = [0, 1, 8191, 8192, 8193, 100_000];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kms-crypto/tests/fixtures/rustfs-written")
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The plaintext the writer encrypted as `obj-<size>`.
fn plaintext(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 31 % 251) as u8).collect()
}

fn keks() -> RecordKeks {
    let master = MasterKeyString::new(String::from_utf8(read("master.txt")).unwrap());
    RecordKeks::derive(&master, Some(&read("keydir/.master-key.salt"))).unwrap()
}

fn record(key_id: &str) -> KeyRecord {
    KeyRecord::parse(key_id, &read(&format!("keydir/{key_id}.key"))).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A local backend holding `xc-active` as `kms migrate rustfs-local` imports it: the material
/// the record opens to, origin external.
async fn service(tmp: &tempfile::TempDir) -> (EncryptionService, Arc<KmsManager>) {
    let active = record("xc-active");
    let (material, _) = active.open(Some(&keks())).unwrap();
    let backend = Arc::new(open(&keys_dir(tmp)).await);
    backend
        .import_key(ImportKeyRequest {
            key_id: active.key_id.clone(),
            material: SecretBytes::new(material.expose_secret().to_vec()),
            key_state: KeyState::Enabled,
            key_usage: KeyUsage::EncryptDecrypt,
            description: active.description.clone(),
            tags: active.tags.clone(),
            creation_date: active.created_at,
            deletion_date: None,
        })
        .await
        .unwrap();
    let manager = Arc::new(KmsManager::with_options(backend, ManagerOptions::default()));
    (EncryptionService::new(manager.clone()), manager)
}

fn whole_object<'a>(object_key: &'a str, headers: &'a BTreeMap<String, String>) -> RustfsObjectRequest<'a> {
    RustfsObjectRequest { bucket: "xc-bucket", object_key, headers, format: RustfsBodyFormat::WholeObject }
}

#[test]
fn every_record_rustfs_wrote_opens_with_the_argon2id_kek_and_keeps_its_state() {
    let keks = keks();
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(fixtures().join("keydir")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "key") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let record = record(&stem);
        let (_, opened_with) = record.open(Some(&keks)).unwrap();
        assert_eq!(opened_with, OpenedWith::Argon2id, "{stem}");
        assert_eq!(record.version, 1, "{stem}");
        assert_eq!(record.unknown_fields, 0, "{stem}: RustFS writes no field our reader does not know");
        seen.push(stem);
    }
    seen.sort();
    assert_eq!(seen, ["rustfs-internal-kms-probe", "xc-active", "xc-disabled", "xc-doomed"]);

    let active = record("xc-active");
    assert_eq!(active.status, KeyStatus::Active);
    assert_eq!(active.description.as_deref(), Some("active key"));
    assert_eq!(active.tags, BTreeMap::from([("team".to_owned(), "xc".to_owned())]));
    assert_eq!(record("xc-disabled").status, KeyStatus::Disabled);
    let doomed = record("xc-doomed");
    assert_eq!(doomed.status, KeyStatus::PendingDeletion);
    let window = doomed.deletion_date.expect("a pending deletion has a date") - doomed.created_at;
    assert!(
        window > time::Duration::days(7) - time::Duration::minutes(1)
            && window <= time::Duration::days(7) + time::Duration::minutes(1),
        "{window}"
    );

    // Another master-key string opens none of them.
    let wrong =
        RecordKeks::derive(&MasterKeyString::new("not the master key".into()), Some(&read("keydir/.master-key.salt")))
            .unwrap();
    assert!(active.open(Some(&wrong)).is_err());
}

#[tokio::test]
async fn rustfs_envelopes_open_through_the_backend_under_the_exact_context_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, manager) = service(&tmp).await;
    let envelopes: Value = serde_json::from_slice(&read("envelopes.json")).unwrap();
    for envelope in envelopes.as_array().unwrap() {
        let name = envelope["name"].as_str().unwrap();
        let blob = base64::engine::general_purpose::STANDARD
            .decode(envelope["ciphertext_blob_b64"].as_str().unwrap())
            .unwrap();
        let context: BTreeMap<String, String> = serde_json::from_value(envelope["encryption_context"].clone()).unwrap();
        let opened = manager
            .decrypt(DecryptRequest {
                ciphertext_blob: blob.clone(),
                encryption_context: context.clone(),
                key_id: None,
            })
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(opened.plaintext.expose_secret(), &hex(&envelope["plaintext_hex"])[..], "{name}");
        assert_eq!((opened.key_id.as_str(), opened.key_version), ("xc-active", 1));

        let mut extra = context.clone();
        extra.insert("tenant".into(), "other".into());
        let refused = manager
            .decrypt(DecryptRequest { ciphertext_blob: blob.clone(), encryption_context: extra, key_id: None })
            .await;
        assert!(matches!(refused, Err(KmsError::Crypto { .. })), "{name}: {refused:?}");
        let mut tampered = blob.clone();
        let at = tampered.iter().position(|&b| b == b'[').unwrap() + 1; // first byte of encrypted_key
        tampered[at] = if tampered[at] == b'1' { b'2' } else { b'1' };
        let refused = manager
            .decrypt(DecryptRequest { ciphertext_blob: tampered, encryption_context: context, key_id: None })
            .await;
        assert!(refused.is_err(), "{name}: a changed encrypted_key opened");
    }
}

#[tokio::test]
async fn rustfs_whole_objects_read_through_the_sse_path_and_tampering_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, _) = service(&tmp).await;
    for size in SIZES {
        let headers: BTreeMap<String, String> =
            serde_json::from_slice(&read(&format!("objects/obj-{size}.headers.json"))).unwrap();
        let body = read(&format!("objects/obj-{size}.body"));
        let object_key = format!("obj-{size}");
        let request = |object_key| whole_object(object_key, &headers);
        let opened = service.decrypt_rustfs_object(&body, request(&object_key)).await;
        assert_eq!(&opened.unwrap_or_else(|e| panic!("obj-{size}: {e}"))[..], plaintext(size), "obj-{size}");

        assert!(service.decrypt_rustfs_object(&body, request("elsewhere")).await.is_err(), "obj-{size} elsewhere");
        let mut extended = body.clone();
        extended.push(0);
        assert!(service.decrypt_rustfs_object(&extended, request(&object_key)).await.is_err(), "obj-{size} extended");
        if size > 0 {
            let mut flipped = body.clone();
            flipped[size / 2] ^= 0x01;
            assert!(service.decrypt_rustfs_object(&flipped, request(&object_key)).await.is_err(), "obj-{size} flipped");
            assert!(
                service.decrypt_rustfs_object(&body[..size - 1], request(&object_key)).await.is_err(),
                "obj-{size} cut"
            );
        }
    }
}

/// The stored metadata of a streaming object, as RustFS's S3 server keeps it next to the body
/// (the names of `docs/migration.md`; the envelope is the one RustFS generated for the object's
/// context `{bucket: "bucket/key"}`).
fn stream_headers(case: &Value, original_size: Option<u64>) -> BTreeMap<String, String> {
    let mut headers = BTreeMap::from([
        ("x-amz-server-side-encryption".to_owned(), "aws:kms".to_owned()),
        ("x-rustfs-encryption-key-id".to_owned(), "xc-active".to_owned()),
        ("x-rustfs-encryption-iv".to_owned(), b64(&hex(&case["base_nonce_hex"]))),
        ("x-rustfs-encryption-key".to_owned(), case["envelope_b64"].as_str().unwrap().to_owned()),
    ]);
    if let Some(size) = original_size {
        headers.insert("x-rustfs-encryption-original-size".to_owned(), size.to_string());
    }
    headers
}

#[tokio::test]
async fn rustfs_rio_streams_decrypt_with_their_data_key_and_through_the_sse_path() {
    let tmp = tempfile::tempdir().unwrap();
    let (service, _) = service(&tmp).await;
    let cases: Value = serde_json::from_slice(&read("streams.json")).unwrap();
    let mut seen = 0;
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let body = read(&format!("streams/{name}.body"));
        let data_key = hex(&case["data_key_hex"]);
        let nonce: [u8; 12] = hex(&case["base_nonce_hex"]).try_into().unwrap();
        if let Some(size) = case["size"].as_u64() {
            let size_usize = size as usize;
            let opened = decrypt_stream(&data_key, &nonce, &body, size).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&opened[..], plaintext(size_usize), "{name}");
            let headers = stream_headers(case, Some(size));
            let format = RustfsBodyFormat::Stream { plaintext_len: size };
            let request = RustfsObjectRequest { bucket: "xc-bucket", object_key: name, headers: &headers, format };
            let opened = service.decrypt_rustfs_object(&body, request).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&opened[..], plaintext(size_usize), "{name} through the pipeline");

            // The end header gone, a byte more, a flipped byte, a shorter expected length.
            assert!(decrypt_stream(&data_key, &nonce, &body[..body.len() - 8], size).is_err(), "{name} without end");
            let mut extended = body.clone();
            extended.push(0);
            assert!(decrypt_stream(&data_key, &nonce, &extended, size).is_err(), "{name} extended");
            if size > 0 {
                let mut flipped = body.clone();
                flipped[body.len() / 2] ^= 0x01;
                assert!(decrypt_stream(&data_key, &nonce, &flipped, size).is_err(), "{name} flipped");
                assert!(decrypt_stream(&data_key, &nonce, &body, size - 1).is_err(), "{name} shorter");
            }
            let elsewhere = RustfsObjectRequest { object_key: "elsewhere", ..request };
            assert!(service.decrypt_rustfs_object(&body, elsewhere).await.is_err(), "{name} elsewhere");
        } else {
            // `[[part number, plaintext length], ...]`, as the object's part list gives them.
            let listed: Vec<(u32, u64)> = serde_json::from_value(case["parts"].clone()).unwrap();
            let parts: Vec<StreamPart> =
                listed.into_iter().map(|(number, plaintext_len)| StreamPart { number, plaintext_len }).collect();
            let expected: Vec<u8> = parts
                .iter()
                .flat_map(|p| (0..p.plaintext_len as usize).map(move |i| ((i + p.number as usize) * 31 % 251) as u8))
                .collect();
            let opened =
                decrypt_multipart_stream(&data_key, &nonce, &body, &parts).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&opened[..], &expected[..], "{name}");
            let headers = stream_headers(case, Some(expected.len() as u64));
            let format = RustfsBodyFormat::MultipartStream { parts: &parts };
            let request = RustfsObjectRequest { bucket: "xc-bucket", object_key: name, headers: &headers, format };
            let opened = service.decrypt_rustfs_object(&body, request).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&opened[..], &expected[..], "{name} through the pipeline");

            let mut renumbered = parts.clone();
            renumbered[2].number = 3;
            assert!(decrypt_multipart_stream(&data_key, &nonce, &body, &renumbered).is_err(), "{name} renumbered");
            assert!(decrypt_multipart_stream(&data_key, &nonce, &body, &parts[..2]).is_err(), "{name} a part dropped");
        }
        seen += 1;
    }
    assert_eq!(seen, 7, "six single-part streams and one multipart object");
}
