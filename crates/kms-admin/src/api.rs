//! The wire types of the admin REST API, re-exported from their home,
//! [`kms_types::api_types`], where the server and its clients (the `kms` CLI) share them.

pub use kms_types::api_types::{
    CacheClearedBody, CacheStats, ConfigureBody, ConfigureCustomKmsRequest, ConfigureKmsRequest,
    ConfigureLocalKmsRequest, ConfigureVaultKmsRequest, DataKeyBody, DescriptionBody, EmptyBody, EncryptBody,
    HealthBody, KmsConfigResponse, KmsServiceStatus, KmsStatusResponse, LifecycleBody, ManagerOptions, StatusBody,
    TagBody, UntagBody,
};
