//! The verifier vectors (`docs/vectors/local-verifier-v1.json`) at the byte level: the record
//! key-encryption key derived from a master key and from a passphrase (Argon2id), and the
//! check value it opens. (The backend-level test `tests/format_vectors.rs` opens them as a
//! store.)

use kms_crypto::aead::{Algorithm, RandomNonceKey};
use serde_json::Value;
use zeroize::Zeroizing;

use super::{Argon2Params, MasterSecret, VERIFIER_AAD, VERIFIER_PLAINTEXT, VerifierFile, derive_kek};

fn hex(text: &Value) -> Vec<u8> {
    let text = text.as_str().expect("a hex string");
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

#[test]
fn local_verifier_v1_key_derivation() {
    let doc: Value = serde_json::from_str(include_str!("../../../docs/vectors/local-verifier-v1.json")).unwrap();
    assert_eq!((doc["format"].as_str(), doc["version"].as_u64()), (Some("local-verifier"), Some(1)));
    for case in doc["cases"].as_array().unwrap() {
        let name = &case["name"];
        let file: VerifierFile = serde_json::from_str(case["file"].as_str().unwrap()).unwrap();
        assert_eq!(file.salt, hex(&case["salt"]), "{name}");
        // The file is exactly what this code writes for those values.
        assert_eq!(serde_json::to_string_pretty(&file).unwrap(), case["file"].as_str().unwrap(), "{name}");
        let secret = match case["protection"].as_str() {
            Some("master_key") => {
                MasterSecret::Key(Zeroizing::new(hex(&case["master_key"]).try_into().expect("32 bytes")))
            }
            Some("passphrase") => MasterSecret::Passphrase(Zeroizing::new(case["passphrase"].as_str().unwrap().into())),
            _ => {
                assert!(file.check.is_none() && file.argon2id.is_none(), "{name}");
                assert!(derive_kek(&MasterSecret::InsecurePlaintext, &file.salt, None).unwrap().is_none());
                continue;
            }
        };
        let params: Option<Argon2Params> = file.argon2id;
        let kek = derive_kek(&secret, &file.salt, params).unwrap().unwrap();
        assert_eq!(kek.to_vec(), hex(&case["kek"]), "{name}");
        let check = file.check.expect("a sealed verifier has a check value");
        assert_eq!(check, hex(&case["check"]), "{name}");
        let opened = RandomNonceKey::new(Algorithm::Aes256Gcm, &kek[..]).unwrap().open(VERIFIER_AAD, &check).unwrap();
        assert_eq!(opened.as_slice(), VERIFIER_PLAINTEXT, "{name}");
    }
}
