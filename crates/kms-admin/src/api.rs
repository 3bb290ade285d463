//! Wire types of the routes whose key id sits in the path (the body then carries the rest),
//! and of responses that have no type in `kms_types`. Clients (the `kms` CLI) use them too.
//!
//! Every request body rejects unknown fields.

use kms_types::api_types::{CacheStats, KmsStatusResponse};
use kms_types::secret::SecretBytes;
use kms_types::types::{BackendCapabilities, EncryptionContext, KeySpec, Tags};
use serde::{Deserialize, Serialize};

/// A body that must be empty or `{}` (enable, disable, rotate, start, stop, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyBody {}

/// `PUT /kms/v1/keys/{key_id}/description`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriptionBody {
    /// The new description.
    pub description: String,
}

/// `POST /kms/v1/keys/{key_id}/tags`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagBody {
    /// Tags to add or overwrite.
    pub tags: Tags,
}

/// `POST /kms/v1/keys/{key_id}/untag`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UntagBody {
    /// Tag names to remove.
    pub tag_keys: Vec<String>,
}

/// `POST /kms/v1/keys/{key_id}/generate-data-key` and `.../generate-data-key-without-plaintext`;
/// the body may be omitted (AES-256, empty context).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataKeyBody {
    /// The data key's size (default `aes256`).
    #[serde(default)]
    pub key_spec: KeySpec,
    /// Context bound to the wrapped key.
    #[serde(default)]
    pub encryption_context: EncryptionContext,
}

/// `POST /kms/v1/keys/{key_id}/encrypt`.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptBody {
    /// At most 4096 bytes, standard base64.
    pub plaintext: SecretBytes,
    /// Context bound to the ciphertext.
    #[serde(default)]
    pub encryption_context: EncryptionContext,
}

/// `GET /kms/v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusBody {
    /// Service state, backend and health.
    #[serde(flatten)]
    pub status: KmsStatusResponse,
    /// Cache statistics while running.
    #[serde(default)]
    pub cache: Option<CacheStats>,
    /// What the running backend supports.
    #[serde(default)]
    pub capabilities: Option<BackendCapabilities>,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthBody {
    /// Always true: the process answers.
    pub live: bool,
    /// Whether the service runs and its backend is healthy.
    pub ready: bool,
}

/// Result of the lifecycle routes (configure, reconfigure, start, stop, cache/clear).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleBody {
    /// The service state afterwards.
    pub status: kms_types::api_types::KmsServiceStatus,
    /// Whether the configuration was saved for the next start (false when no store is set).
    pub persisted: bool,
}
