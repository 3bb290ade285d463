//! Every Rust sample of the developer API document (`shared/spec/developer-api.md`), with
//! `rustfs_kms` renamed to `kms`, compiled and run. The samples are copied verbatim between
//! the `// --- sample N ---` markers; only the assertions after them are ours.
//!
//! Samples 3 and 4 need a running backend. Until the local backend lands in the facade they
//! run on the in-memory backend, registered (for both backend kinds) in the global service
//! manager before the spec's `init_global_kms_service_manager()` call, which then returns that
//! manager. Sample 1's Vault configuration is used as written: no Vault server is contacted.

use std::sync::Arc;

use kms::backends::BackendRegistry;
use kms::mock::MemoryBackendFactory;

/// Sample 1 (constructing a configuration) and sample 2 (from the admin REST payload).
#[rustfmt::skip] // the samples stay as the spec writes them
fn samples_1_and_2() -> (kms::config::KmsConfig, kms::config::KmsConfig) {
    #![allow(unused_imports)] // sample 1 imports LocalConfig without using it

    // --- sample 1 ---
    use kms::config::{BackendConfig, KmsBackend, KmsConfig, LocalConfig, VaultConfig, VaultAuthMethod};

    let config = KmsConfig {
        backend: KmsBackend::Vault,
        backend_config: BackendConfig::Vault(VaultConfig {
            address: "https://vault.example.com:8200".parse().unwrap(),
            auth_method: VaultAuthMethod::Token { token: "s.XYZ".into() },
            namespace: None,
            mount_path: "transit".into(),
            kv_mount: "secret".into(),
            key_path_prefix: "rustfs/kms/keys".into(),
            tls: None,
        }),
        default_key_id: Some("rustfs-master".into()),
        timeout: std::time::Duration::from_secs(30),
        retry_attempts: 3,
        enable_cache: true,
        cache_config: Default::default(),
    };
    // --- sample 2 ---
    use kms::api_types::{ConfigureKmsRequest, ConfigureVaultKmsRequest};

    let request = ConfigureKmsRequest::Vault(ConfigureVaultKmsRequest {
        address: "https://vault.example.com:8200".into(),
        auth_method: VaultAuthMethod::Token { token: "s.XYZ".into() },
        namespace: None,
        mount_path: Some("transit".into()),
        kv_mount: Some("secret".into()),
        key_path_prefix: Some("rustfs/kms/keys".into()),
        default_key_id: Some("rustfs-master".into()),
        skip_tls_verify: Some(false),
        timeout_seconds: Some(30),
        retry_attempts: Some(5),
        enable_cache: Some(true),
        max_cached_keys: Some(2048),
        cache_ttl_seconds: Some(600),
    });

    let kms_config: KmsConfig = (&request).into();
    // --- end of samples 1 and 2 ---
    (config, kms_config)
}

#[test]
fn sample_1_and_2_build_valid_vault_configurations() {
    use kms::config::{BackendConfig, KmsBackend};
    let (config, from_request) = samples_1_and_2();
    config.validate().expect("sample 1 is a valid configuration");
    from_request.validate().expect("sample 2 converts to a valid configuration");

    assert_eq!(from_request.backend, KmsBackend::Vault);
    assert_eq!(from_request.backend_config, config.backend_config, "both samples describe the same Vault");
    assert_eq!(from_request.default_key_id.as_deref(), Some("rustfs-master"));
    assert_eq!(from_request.timeout, std::time::Duration::from_secs(30));
    assert_eq!(from_request.retry_attempts, 5);
    assert!(from_request.enable_cache);
    assert_eq!(from_request.cache_config.max_keys, 2048);
    assert_eq!(from_request.cache_config.ttl, std::time::Duration::from_secs(600));
    let BackendConfig::Vault(vault) = &from_request.backend_config else { unreachable!() };
    assert_eq!(vault.tls, None, "skip_tls_verify: false keeps verification on");
    // The token never shows in Debug output.
    assert!(!format!("{config:?} {from_request:?}").contains("s.XYZ"));
}

/// Samples 3 (service manager lifecycle) and 4 (the encryption service), in sequence, as the
/// document reads: sample 3 configures with sample 1's `config`.
#[rustfmt::skip] // the samples stay as the spec writes them
async fn samples_3_and_4(config: kms::config::KmsConfig) -> kms::error::Result<kms::types::GenerateDataKeyResponse> {
    // --- sample 3 ---
    use kms::{init_global_kms_service_manager, get_global_kms_service_manager};

    let manager = init_global_kms_service_manager();
    manager.configure(config).await?;
    manager.start().await?;

    let status = manager.get_status().await; // -> KmsServiceStatus::Running
    // --- sample 4 ---
    use kms::types::{CreateKeyRequest, KeyUsage, GenerateDataKeyRequest, KeySpec};
    use kms::get_global_encryption_service;

    let service = get_global_encryption_service().await.expect("service not initialised");

    let create = CreateKeyRequest {
        key_name: None,
        key_usage: KeyUsage::EncryptDecrypt,
        description: Some("project-alpha".into()),
        tags: Default::default(),
        origin: None,
        policy: None,
    };
    let created = service.create_key(create).await?;

    let data_key = service
        .generate_data_key(GenerateDataKeyRequest {
            key_id: created.key_id.clone(),
            key_spec: KeySpec::Aes256,
            encryption_context: Default::default(),
        })
        .await?;
    // --- end of samples 3 and 4 ---
    assert_eq!(status, kms::api_types::KmsServiceStatus::Running);
    assert!(Arc::ptr_eq(&manager, &get_global_kms_service_manager().unwrap()));
    assert_eq!(data_key.key_id, created.key_id);
    Ok(data_key)
}

#[tokio::test]
async fn samples_3_and_4_run_the_service_and_make_a_data_key() {
    // The test registry: in-memory backends for both kinds (see the file's docs).
    let mut registry = BackendRegistry::new();
    registry.register(Arc::new(MemoryBackendFactory::new(kms::config::KmsBackend::Local)));
    registry.register(Arc::new(MemoryBackendFactory::new(kms::config::KmsBackend::Vault)));
    kms::service_manager::init_global_kms_service_manager(registry);

    let (config, _) = samples_1_and_2();
    let data_key = samples_3_and_4(config).await.expect("samples 3 and 4 run");
    assert_eq!(data_key.plaintext_key.len(), 32);

    // The data key unwraps through the same service.
    let service = kms::get_global_encryption_service().await.unwrap();
    let unwrapped = service
        .decrypt(kms::types::DecryptRequest {
            ciphertext_blob: data_key.ciphertext_blob.clone(),
            encryption_context: Default::default(),
            key_id: Some(data_key.key_id.clone()),
        })
        .await
        .unwrap();
    assert_eq!(unwrapped.plaintext.expose_secret(), data_key.plaintext_key.expose_secret());
}

/// "Backend integration points": a custom backend implementing the nine methods of the
/// spec's trait listing is a `KmsBackend`, can be registered through a `BackendFactory`, and
/// gets `Unsupported` for the optional operations it does not implement.
mod custom_backend {
    use kms::backends::{BackendFactory, BackendRegistry, KmsBackend};
    use kms::config::{KmsBackend as Kind, KmsConfig, LocalConfig, MasterKeySource};
    use kms::error::{KmsError, Result};
    use kms::mock::MemoryBackend;
    use kms::types::*;
    use std::sync::Arc;

    #[derive(Default)]
    struct Custom(MemoryBackend);

    #[async_trait::async_trait]
    impl KmsBackend for Custom {
        async fn create_key(&self, request: CreateKeyRequest) -> Result<CreateKeyResponse> {
            self.0.create_key(request).await
        }
        async fn encrypt(&self, request: EncryptRequest) -> Result<EncryptResponse> {
            self.0.encrypt(request).await
        }
        async fn decrypt(&self, request: DecryptRequest) -> Result<DecryptResponse> {
            self.0.decrypt(request).await
        }
        async fn generate_data_key(&self, request: GenerateDataKeyRequest) -> Result<GenerateDataKeyResponse> {
            self.0.generate_data_key(request).await
        }
        async fn describe_key(&self, request: DescribeKeyRequest) -> Result<DescribeKeyResponse> {
            self.0.describe_key(request).await
        }
        async fn list_keys(&self, request: ListKeysRequest) -> Result<ListKeysResponse> {
            self.0.list_keys(request).await
        }
        async fn delete_key(&self, request: DeleteKeyRequest) -> Result<DeleteKeyResponse> {
            self.0.delete_key(request).await
        }
        async fn cancel_key_deletion(&self, request: CancelKeyDeletionRequest) -> Result<CancelKeyDeletionResponse> {
            self.0.cancel_key_deletion(request).await
        }
        async fn health_check(&self) -> Result<bool> {
            self.0.health_check().await
        }
    }

    struct CustomFactory;

    #[async_trait::async_trait]
    impl BackendFactory for CustomFactory {
        fn kind(&self) -> Kind {
            Kind::Local
        }
        async fn build(&self, _config: &KmsConfig) -> Result<Arc<dyn KmsBackend>> {
            Ok(Arc::new(Custom::default()))
        }
    }

    #[tokio::test]
    async fn a_custom_backend_plugs_in_through_a_factory() {
        let mut registry = BackendRegistry::new();
        registry.register(Arc::new(CustomFactory));
        let config = KmsConfig::local(LocalConfig::new("/unused", MasterKeySource::InsecurePlaintextForDevelopment));
        let backend = registry.build(&config).await.unwrap();
        assert!(backend.health_check().await.unwrap());
        let key = backend.create_key(CreateKeyRequest::default()).await.unwrap().key_id;
        let err = backend.rotate_key(KeyIdRequest { key_id: key }).await.unwrap_err();
        assert!(matches!(err, KmsError::Unsupported { operation: "rotate_key", .. }), "{err:?}");
    }
}

/// The spec's error table names these variants.
#[test]
fn the_spec_error_categories_exist() {
    use kms::error::KmsError;
    let categories = [
        KmsError::configuration("f", "m"),
        KmsError::backend("m"),
        KmsError::crypto(),
        KmsError::Cache { message: "m".into() },
    ];
    let codes: Vec<_> = categories.iter().map(KmsError::code).collect();
    assert_eq!(codes, ["configuration_error", "backend_error", "crypto_error", "cache_error"]);
    let _: kms::error::Result<()> = Ok(());
}
