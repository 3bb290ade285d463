//! The published test vectors of the local store's formats (`docs/vectors/local-*.json`,
//! described in `docs/formats.md`), opened through the backend itself: a key directory is
//! assembled from the vector files, and the backend must accept the verifier, read every
//! record with the documented metadata, and decrypt every ciphertext blob. One test per
//! vector file; the same files are re-derived by `docs/vectors/check.py` (Python, written from
//! the documentation alone).

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kms_backend_local::{LocalBackend, LocalOptions, ManualClock};
use kms_core::backends::KmsBackend;
use kms_testkit::vectors::unhex as hex;
use kms_types::config::{LocalConfig, MasterKeySource};
use kms_types::error::KmsError;
use kms_types::types::{DecryptRequest, DescribeKeyRequest, EncryptionContext, KeyMetadata, KeyState, ListKeysRequest};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn cases(text: &str, format: &str) -> Vec<Value> {
    kms_testkit::vectors::cases(text, format, 1)
}

const VERIFIERS: &str = include_str!("../../../docs/vectors/local-verifier-v1.json");
const RECORDS: &str = include_str!("../../../docs/vectors/local-key-record-v1.json");
const BLOBS: &str = include_str!("../../../docs/vectors/local-blob-v1.json");
const RECORDS_V2: &str = include_str!("../../../docs/vectors/local-key-record-v2.json");

fn text<'a>(case: &'a Value, field: &str) -> &'a str {
    case[field].as_str().unwrap_or_else(|| panic!("{field} is a string"))
}

/// The verifier vector whose `protection` is `protection`.
fn verifier(protection: &str) -> Value {
    cases(VERIFIERS, "local-verifier").into_iter().find(|c| c["protection"] == protection).expect("a verifier case")
}

/// A key directory (0700) holding `files` (0600), as a store at format version 1 leaves it.
fn key_dir(tmp: &tempfile::TempDir, files: &[(String, &str)]) -> PathBuf {
    let dir = tmp.path().join("keys");
    fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
    for (name, content) in files {
        fs::write(dir.join(name), content).unwrap();
        fs::set_permissions(dir.join(name), fs::Permissions::from_mode(0o600)).unwrap();
    }
    dir
}

fn source(case: &Value) -> MasterKeySource {
    match text(case, "protection") {
        "master_key" => MasterKeySource::Key { key: text(case, "master_key_text").into() },
        "passphrase" => MasterKeySource::Passphrase { passphrase: text(case, "passphrase").into() },
        _ => MasterKeySource::InsecurePlaintextForDevelopment,
    }
}

/// Opens the store at a time before every date in the vectors (nothing is purged).
async fn open(dir: &Path, source: MasterKeySource) -> Result<LocalBackend, KmsError> {
    let clock = Arc::new(ManualClock::new(time::macros::datetime!(2026-01-15 00:00 UTC)));
    LocalBackend::open_with(&LocalConfig::new(dir, source), LocalOptions::default().with_clock(clock)).await
}

#[tokio::test]
async fn local_verifier_v1() {
    for case in cases(VERIFIERS, "local-verifier") {
        let tmp = tempfile::tempdir().unwrap();
        let dir = key_dir(&tmp, &[(".verifier.json".into(), text(&case, "file"))]);
        let backend = open(&dir, source(&case)).await.unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
        backend.shutdown().await;
        let wrong = match text(&case, "protection") {
            "master_key" => MasterKeySource::Key { key: "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=".into() },
            "passphrase" => MasterKeySource::Passphrase { passphrase: "wrong horse battery staple".into() },
            _ => MasterKeySource::Passphrase { passphrase: text(&verifier("passphrase"), "passphrase").into() },
        };
        let err = open(&dir, wrong).await.unwrap_err();
        assert!(matches!(err, KmsError::Configuration { .. }), "{}: {err:?}", case["name"]);
    }
    // `master.key` as `kms serve` writes it: the 44 base64 characters, no newline.
    let case = verifier("master_key");
    let tmp = tempfile::tempdir().unwrap();
    let dir = key_dir(&tmp, &[(".verifier.json".into(), text(&case, "file"))]);
    let key_file = tmp.path().join("master.key");
    fs::write(&key_file, text(&case, "master_key_text")).unwrap();
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(text(&case, "master_key_text").len(), 44);
    open(&dir, MasterKeySource::File { path: key_file }).await.unwrap().shutdown().await;
}

fn date(value: &Value) -> Option<OffsetDateTime> {
    value.as_str().map(|s| OffsetDateTime::parse(s, &Rfc3339).expect("RFC 3339"))
}

fn expected_metadata(case: &Value) -> (KeyState, Option<String>, Value, [Option<OffsetDateTime>; 3], u32) {
    let meta = &case["meta"];
    let state = serde_json::from_value(meta["state"].clone()).expect("a stored state");
    let description = meta["description"].as_str().map(str::to_owned);
    let dates = [date(&meta["creation_date"]), date(&meta["deletion_date"]), date(&meta["rotation_date"])];
    (state, description, meta["tags"].clone(), dates, case["current_version"].as_u64().unwrap() as u32)
}

fn actual_metadata(m: &KeyMetadata) -> (KeyState, Option<String>, Value, [Option<OffsetDateTime>; 3], u32) {
    let tags = serde_json::to_value(&m.tags).unwrap();
    (
        m.key_state,
        m.description.clone(),
        tags,
        [Some(m.creation_date), m.deletion_date, m.rotation_date],
        m.current_version,
    )
}

#[tokio::test]
async fn local_key_record_v1() {
    let records = cases(RECORDS, "local-key-record");
    for protection in ["master_key", "insecure_plaintext_for_development"] {
        let verifier = verifier(protection);
        let sealed = protection == "master_key";
        let ours: Vec<&Value> = records.iter().filter(|c| (c["protection"] == "aes_256_gcm") == sealed).collect();
        assert!(!ours.is_empty());
        let mut files = vec![(".verifier.json".to_owned(), text(&verifier, "file"))];
        files.extend(ours.iter().map(|c| (format!("{}.key", text(c, "key_id")), text(c, "file"))));
        let tmp = tempfile::tempdir().unwrap();
        let dir = key_dir(&tmp, &files);
        let backend = open(&dir, source(&verifier)).await.unwrap();
        for case in &ours {
            let key_id = text(case, "key_id").to_owned();
            let described = backend.describe_key(DescribeKeyRequest { key_id }).await.unwrap();
            assert_eq!(actual_metadata(&described.key_metadata), expected_metadata(case), "{}", case["name"]);
        }
        backend.shutdown().await;

        // The header is bound: a record whose current_version is edited is unavailable (in a
        // fresh directory: the one above was migrated into the key store when it was opened).
        let case = ours[0];
        let version = case["current_version"].as_u64().unwrap();
        let edited = text(case, "file")
            .replace(&format!("\"current_version\": {version}"), &format!("\"current_version\": {}", version + 1));
        let edited_name = format!("{}.key", text(case, "key_id"));
        let edited_files: Vec<(String, &str)> = files
            .iter()
            .map(|(name, body)| (name.clone(), if *name == edited_name { edited.as_str() } else { *body }))
            .collect();
        let tmp = tempfile::tempdir().unwrap();
        let dir = key_dir(&tmp, &edited_files);
        let backend = open(&dir, source(&verifier)).await.unwrap();
        let listed = backend.list_keys(ListKeysRequest::default()).await.unwrap();
        let entry = listed.keys.iter().find(|k| k.key_id == text(case, "key_id")).unwrap();
        assert_eq!(entry.key_state, KeyState::Unavailable, "{}", case["name"]);
        backend.shutdown().await;
    }
}

#[tokio::test]
async fn local_blob_v1() {
    // The blobs are made under the versions of the sealed key record vectors.
    let records: Vec<Value> =
        cases(RECORDS, "local-key-record").into_iter().filter(|c| c["protection"] == "aes_256_gcm").collect();
    let verifier = verifier("master_key");
    let tmp = tempfile::tempdir().unwrap();
    let mut files = vec![(".verifier.json".to_owned(), text(&verifier, "file"))];
    files.extend(records.iter().map(|c| (format!("{}.key", text(c, "key_id")), text(c, "file"))));
    let dir = key_dir(&tmp, &files);
    let backend = open(&dir, source(&verifier)).await.unwrap();
    let blobs = cases(BLOBS, "local-blob");
    let envelope_versions: Vec<u8> = blobs.iter().map(|c| hex(text(c, "envelope"))[0]).collect();
    assert!(envelope_versions.contains(&1) && envelope_versions.contains(&2), "v1 (read) and v2 (written) envelopes");
    for case in blobs {
        let context: EncryptionContext = serde_json::from_value(case["context"].clone()).unwrap();
        let blob = hex(text(&case, "blob"));
        let request =
            DecryptRequest { ciphertext_blob: blob.clone(), encryption_context: context.clone(), key_id: None };
        let opened = backend.decrypt(request).await.unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
        assert_eq!(opened.plaintext.expose_secret(), hex(text(&case, "plaintext")).as_slice(), "{}", case["name"]);
        assert_eq!(
            (opened.key_id.as_str(), u64::from(opened.key_version)),
            (text(&case, "key_id"), case["key_version"].as_u64().unwrap())
        );

        // The blob's header names the version whose material opens it: naming another fails.
        let mut other_version = blob.clone();
        let at = 4 + 2 + text(&case, "key_id").len() + 3;
        other_version[at] ^= 3;
        let request = DecryptRequest { ciphertext_blob: other_version, encryption_context: context, key_id: None };
        let err = backend.decrypt(request).await.unwrap_err();
        assert!(matches!(err, KmsError::Crypto { .. }), "{}: {err:?}", case["name"]);
    }
    backend.shutdown().await;
}

/// A key store assembled as `docs/formats.md` describes it (`keys.redb`: the `keys`,
/// `pending_deletion` and `store_info` tables) with redb itself, holding one format 2 record
/// vector: the backend reads the key with the vector's metadata, decrypts the blob vectors made
/// under it, and lists the key `Unavailable` once the record's header is edited.
#[tokio::test]
async fn local_key_record_v2_in_a_store() {
    const KEYS: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("keys");
    const PENDING: redb::TableDefinition<'_, &str, ()> = redb::TableDefinition::new("pending_deletion");
    const INFO: redb::TableDefinition<'_, &str, u64> = redb::TableDefinition::new("store_info");
    let store = |dir: &Path, case: &Value, value: &[u8]| {
        let path = dir.join("keys.redb");
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            txn.open_table(INFO).unwrap().insert("format_version", 1).unwrap();
            txn.open_table(KEYS).unwrap().insert(text(case, "key_id"), value).unwrap();
            let mut pending = txn.open_table(PENDING).unwrap();
            if case["meta"]["state"] == "pending_deletion" {
                pending.insert(text(case, "key_id"), ()).unwrap();
            }
        }
        txn.commit().unwrap();
        drop(db);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    };
    let blobs = cases(BLOBS, "local-blob");
    for case in kms_testkit::vectors::cases(RECORDS_V2, "local-key-record", 2) {
        let name = &case["name"];
        let verifier =
            verifier(if case["protection"] == 1 { "master_key" } else { "insecure_plaintext_for_development" });
        let value = hex(text(&case, "value"));
        let tmp = tempfile::tempdir().unwrap();
        let dir = key_dir(&tmp, &[(".verifier.json".into(), text(&verifier, "file"))]);
        store(&dir, &case, &value);
        let backend = open(&dir, source(&verifier)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let key_id = text(&case, "key_id").to_owned();
        let described = backend.describe_key(DescribeKeyRequest { key_id: key_id.clone() }).await.unwrap();
        let mut expected = case.clone();
        let meta = expected["meta"].as_object_mut().unwrap();
        for member in ["description", "deletion_date", "rotation_date"] {
            meta.entry(member).or_insert(Value::Null);
        }
        meta.entry("tags").or_insert(serde_json::json!({}));
        assert_eq!(actual_metadata(&described.key_metadata), expected_metadata(&expected), "{name}");
        let mut opened = 0;
        for blob in blobs.iter().filter(|b| b["key_id"] == case["key_id"]) {
            let context: EncryptionContext = serde_json::from_value(blob["context"].clone()).unwrap();
            let request =
                DecryptRequest { ciphertext_blob: hex(text(blob, "blob")), encryption_context: context, key_id: None };
            let plaintext = backend.decrypt(request).await.unwrap_or_else(|e| panic!("{name}: {}: {e}", blob["name"]));
            assert_eq!(plaintext.plaintext.expose_secret(), hex(text(blob, "plaintext")).as_slice(), "{name}");
            opened += 1;
        }
        assert!(opened > 0 || key_id != "app-1", "{name}: the blob vectors of app-1 open under its record");
        backend.shutdown().await;

        // An edited current_version: the record no longer reads, and its key is unavailable.
        let mut edited = value;
        edited[5] ^= 1;
        let tmp = tempfile::tempdir().unwrap();
        let dir = key_dir(&tmp, &[(".verifier.json".into(), text(&verifier, "file"))]);
        store(&dir, &case, &edited);
        let backend = open(&dir, source(&verifier)).await.unwrap();
        let listed = backend.list_keys(ListKeysRequest::default()).await.unwrap();
        assert_eq!(
            listed.keys.iter().map(|k| (k.key_id.as_str(), k.key_state)).collect::<Vec<_>>(),
            [(key_id.as_str(), KeyState::Unavailable)]
        );
        backend.shutdown().await;
    }
}
