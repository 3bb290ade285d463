//! The published test vectors of the Vault ciphertext blob (`docs/vectors/vault-blob-v1.json`,
//! described in `docs/formats.md`), parsed and re-encoded by `VaultBlob`. The Transit
//! ciphertext inside is Vault's own format (its bytes cannot be re-derived without the Transit
//! key); the vector pins the framing and the `associated_data` kms sends with it. No Vault
//! server is needed. `docs/vectors/check.py` checks the same file in Python.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_backend_vault::blob::{BLOB_PREFIX_V1, VaultBlob};
use kms_types::error::KmsError;
use kms_types::types::EncryptionContext;
use serde_json::Value;

#[test]
fn vault_blob_v1() {
    let doc: Value = serde_json::from_str(include_str!("../../../docs/vectors/vault-blob-v1.json")).unwrap();
    assert_eq!((doc["format"].as_str(), doc["version"].as_u64()), (Some("vault-blob"), Some(1)));
    for case in doc["cases"].as_array().unwrap() {
        let name = &case["name"];
        let text = case["blob"].as_str().unwrap();
        let blob = VaultBlob::decode(text.as_bytes()).unwrap();
        assert_eq!(blob.key_id, case["key_id"].as_str().unwrap(), "{name}");
        assert_eq!(u64::from(blob.key_version), case["key_version"].as_u64().unwrap(), "{name}");
        assert_eq!(blob.transit_ciphertext, case["transit_ciphertext"].as_str().unwrap(), "{name}");
        assert_eq!(blob.encode(), text.as_bytes(), "{name}");
        assert!(text.starts_with(BLOB_PREFIX_V1));

        let context: EncryptionContext = serde_json::from_value(case["context"].clone()).unwrap();
        let associated_data = STANDARD.encode(kms_crypto::context::canonical_context(&context));
        assert_eq!(associated_data, case["associated_data"].as_str().unwrap(), "{name}");

        // Another format version is refused, opaquely.
        let other = text.replacen("vault-kms:1:", "vault-kms:2:", 1);
        assert!(matches!(VaultBlob::decode(other.as_bytes()), Err(KmsError::Crypto { .. })), "{name}");
    }
}
