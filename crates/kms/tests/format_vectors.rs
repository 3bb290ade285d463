//! The SSE-KMS case of `docs/vectors/sse-metadata-v1.json`, end to end: a local key store is
//! assembled from the verifier and key record vectors (`docs/vectors/local-*-v1.json`), and
//! `EncryptionService::decrypt_stream` must open the stored object from its metadata alone,
//! through the local backend's ciphertext blob. `docs/vectors/check.py` follows the same chain
//! in Python.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::sync::Arc;

use kms::config::{LocalConfig, MasterKeySource};
use kms::encryption::pipeline::DecryptStreamRequest;
use kms::encryption::service::EncryptionService;
use kms::encryption::sse::{ObjectMetadata, SseKind};
use kms::local::LocalBackend;
use kms::manager::{KmsManager, ManagerOptions};
use kms_testkit::vectors::hex;
use serde_json::Value;
use tokio::io::AsyncReadExt;

fn cases(text: &str, format: &str) -> Vec<Value> {
    kms_testkit::vectors::cases(text, format, 1)
}

#[tokio::test]
async fn sse_kms_metadata_v1_through_the_local_backend() {
    let verifier = cases(include_str!("../../../docs/vectors/local-verifier-v1.json"), "local-verifier")
        .into_iter()
        .find(|c| c["protection"] == "master_key")
        .unwrap();
    let record = cases(include_str!("../../../docs/vectors/local-key-record-v1.json"), "local-key-record")
        .into_iter()
        .find(|c| c["protection"] == "aes_256_gcm")
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
    for (name, case) in
        [(".verifier.json".to_owned(), &verifier), (format!("{}.key", record["key_id"].as_str().unwrap()), &record)]
    {
        fs::write(dir.join(&name), case["file"].as_str().unwrap()).unwrap();
        fs::set_permissions(dir.join(&name), fs::Permissions::from_mode(0o600)).unwrap();
    }
    let source = MasterKeySource::Key { key: verifier["master_key_text"].as_str().unwrap().into() };
    let backend = Arc::new(LocalBackend::open(&LocalConfig::new(&dir, source)).await.unwrap());
    let service =
        EncryptionService::new(Arc::new(KmsManager::with_options(backend.clone(), ManagerOptions::default())));

    let sse = cases(include_str!("../../../docs/vectors/sse-metadata-v1.json"), "sse-metadata");
    let kms_cases: Vec<&Value> = sse.iter().filter(|c| c["master_key_id"].is_string()).collect();
    assert!(!kms_cases.is_empty());
    for case in kms_cases {
        let metadata = ObjectMetadata::from_json(case["metadata"].as_str().unwrap()).unwrap();
        assert_eq!(metadata.mode, SseKind::Kms);
        let object = hex(&case["object"]);
        let request = DecryptStreamRequest {
            bucket: case["bucket"].as_str().unwrap(),
            object_key: case["object_key"].as_str().unwrap(),
            metadata: &metadata,
            customer_key: None,
            range: None,
        };
        let mut stream = service.decrypt_stream(&object[..], request).await.unwrap();
        let mut plaintext = Vec::new();
        stream.read_to_end(&mut plaintext).await.unwrap();
        assert_eq!(plaintext, hex(&case["plaintext"]), "{}", case["name"]);

        // The same object read under another key is refused: the object key is in the context.
        let request = DecryptStreamRequest {
            bucket: case["bucket"].as_str().unwrap(),
            object_key: "elsewhere.txt",
            metadata: &metadata,
            customer_key: None,
            range: None,
        };
        let err = service.decrypt_stream(&object[..], request).await.expect_err("another object key is refused");
        assert!(matches!(err, kms::error::KmsError::Crypto { .. }), "{err:?}");
    }
    backend.shutdown().await;
}
