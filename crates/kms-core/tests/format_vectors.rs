//! The published test vectors of the stored SSE object metadata (`docs/vectors/sse-metadata-v1.json`,
//! described in `docs/formats.md` and `docs/sse-integration.md`). Every case's JSON reads and
//! re-encodes to the same bytes; the SSE-C cases, whose data key is wrapped under a key derived
//! from the customer key, are fixed bytes end to end (metadata, verifier, wrapped data key,
//! stream) that `EncryptionService::decrypt_stream` must open with no KMS at all. (The SSE-KMS
//! case needs the local backend: `crates/kms/tests/format_vectors.rs` opens it.)
//! `docs/vectors/check.py` re-derives the same file in Python.

use std::sync::Arc;

use kms_core::encryption::pipeline::DecryptStreamRequest;
use kms_core::encryption::service::EncryptionService;
use kms_core::encryption::sse::{CustomerKey, ObjectMetadata, SseKind};
use kms_core::manager::{KmsManager, ManagerOptions};
use kms_core::mock::MemoryBackend;
use kms_types::error::KmsError;
use serde_json::Value;
use tokio::io::AsyncReadExt;

fn hex(value: &Value) -> Vec<u8> {
    let text = value.as_str().expect("a hex string");
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

async fn read(
    service: &EncryptionService,
    case: &Value,
    metadata: &ObjectMetadata,
    key: &CustomerKey,
) -> Result<Vec<u8>, KmsError> {
    let object = hex(&case["object"]);
    let request = DecryptStreamRequest {
        bucket: case["bucket"].as_str().unwrap(),
        object_key: case["object_key"].as_str().unwrap(),
        metadata,
        customer_key: Some(key),
        range: None,
    };
    let mut stream = service.decrypt_stream(&object[..], request).await?;
    let mut plaintext = Vec::new();
    stream.read_to_end(&mut plaintext).await.map_err(|e| KmsError::backend(e.to_string()))?;
    Ok(plaintext)
}

#[tokio::test]
async fn sse_metadata_v1() {
    let doc: Value = serde_json::from_str(include_str!("../../../docs/vectors/sse-metadata-v1.json")).unwrap();
    assert_eq!((doc["format"].as_str(), doc["version"].as_u64()), (Some("sse-metadata"), Some(1)));
    let manager = KmsManager::with_options(Arc::new(MemoryBackend::new()), ManagerOptions::default());
    let service = EncryptionService::new(Arc::new(manager));
    for case in doc["cases"].as_array().unwrap() {
        let name = &case["name"];
        let json = case["metadata"].as_str().unwrap();
        let metadata = ObjectMetadata::from_json(json).unwrap();
        assert_eq!(metadata.to_json(), json, "{name}");
        assert_eq!(metadata.wrapped_data_key, hex(&case["wrapped_data_key"]), "{name}");
        if metadata.mode != SseKind::Customer {
            continue;
        }
        assert_eq!(metadata.customer_key_verifier, Some(hex(&case["verifier"])), "{name}");
        let key = CustomerKey::new(&hex(&case["customer_key"]), case["customer_key_md5"].as_str().unwrap()).unwrap();
        assert_eq!(read(&service, case, &metadata, &key).await.unwrap(), hex(&case["plaintext"]), "{name}");

        // Another customer key fails at the verifier, before any data is read.
        let other = [0x78u8; 32];
        let wrong = CustomerKey::new(&other, &CustomerKey::md5_of(&other)).unwrap();
        let err = read(&service, case, &metadata, &wrong).await.unwrap_err();
        assert!(matches!(err, KmsError::Unauthorized { .. }), "{name}: {err:?}");
    }
}
