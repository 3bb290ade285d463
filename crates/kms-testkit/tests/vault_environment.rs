//! The Vault test environment: a private OpenBao dev server found or installed like
//! `cargo xtask test` does, a service on it, and the server gone after drop.

use std::net::TcpStream;

use kms_testkit::VaultTestEnvironment;
use kms_types::error::KmsError;
use kms_types::types::{CreateKeyRequest, DecryptRequest, EncryptRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vault_environment_serves_keys_and_stops_its_server() {
    let env = VaultTestEnvironment::start().await.expect("start");
    let port = env.server().port();
    let key = env.service().create_key(CreateKeyRequest::default()).await.expect("create");
    let sealed = env
        .service()
        .encrypt(EncryptRequest {
            key_id: key.key_id.clone(),
            plaintext: b"through transit".as_slice().into(),
            encryption_context: [("k".to_owned(), "v".to_owned())].into(),
        })
        .await
        .expect("encrypt");
    let wrong_context = DecryptRequest {
        ciphertext_blob: sealed.ciphertext_blob.clone(),
        encryption_context: Default::default(),
        key_id: None,
    };
    let err = env.service().decrypt(wrong_context).await.unwrap_err();
    assert!(matches!(err, KmsError::Crypto { .. }), "{err:?}");
    let right_context = DecryptRequest {
        ciphertext_blob: sealed.ciphertext_blob,
        encryption_context: [("k".to_owned(), "v".to_owned())].into(),
        key_id: Some(key.key_id),
    };
    let opened = env.service().decrypt(right_context).await.expect("decrypt");
    assert_eq!(opened.plaintext.expose_secret(), b"through transit");
    // The key lives on this server: its Transit mount holds at least one key.
    let keys = env.server().bao(&["list", "-format=json", "transit/keys"]).expect("list transit keys");
    assert!(keys.trim_start().starts_with('[') && keys.contains('"'), "{keys}");
    drop(env);
    let refused = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.kind());
    assert_eq!(refused.err(), Some(std::io::ErrorKind::ConnectionRefused), "the dev server outlived the environment");
}
