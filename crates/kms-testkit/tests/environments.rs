//! The local test environment runs a working service and removes its directory on drop;
//! the forwarding backend passes the contract suite (so it forwards every operation the inner
//! backend declares).

use std::sync::Arc;

use kms_core::backends::KmsBackend;
use kms_core::mock::MemoryBackend;
use kms_testkit::LocalTestEnvironment;
use kms_testkit::forwarding::Forwarding;
use kms_types::error::KmsError;
use kms_types::types::{CreateKeyRequest, DescribeKeyRequest, GenerateDataKeyRequest, KeySpec, KeyState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_environment_serves_keys_and_cleans_up() {
    let env = LocalTestEnvironment::start().await.expect("start");
    let dir = env.dir().to_owned();
    let key = env.service().create_key(CreateKeyRequest::default()).await.expect("create");
    let data_key = env
        .service()
        .generate_data_key(GenerateDataKeyRequest {
            key_id: key.key_id.clone(),
            key_spec: KeySpec::Aes256,
            encryption_context: Default::default(),
        })
        .await
        .expect("data key");
    assert_eq!(data_key.plaintext_key.len(), 32);
    let described = env.service().describe_key(DescribeKeyRequest { key_id: key.key_id }).await.expect("describe");
    assert_eq!(described.key_metadata.key_state, KeyState::Enabled);
    assert!(dir.join("keys").is_dir(), "the key store lives in the environment's directory");
    env.stop().await.expect("stop");
    assert!(!dir.exists(), "the directory outlived the environment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_local_environments_do_not_share_keys() {
    let a = LocalTestEnvironment::start().await.expect("start a");
    let b = LocalTestEnvironment::start().await.expect("start b");
    let key = a.service().create_key(CreateKeyRequest::default()).await.expect("create");
    let err = b.service().describe_key(DescribeKeyRequest { key_id: key.key_id }).await.unwrap_err();
    assert!(matches!(err, KmsError::KeyNotFound { .. }), "{err:?}");
}

kms_testkit::backend_contract_tests!(async {
    Arc::new(Forwarding::new(Arc::new(MemoryBackend::new()), ())) as Arc<dyn KmsBackend>
});
