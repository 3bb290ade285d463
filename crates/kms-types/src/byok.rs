//! Import of key material (BYOK), the AWS KMS way: a key created with origin `external` is
//! `PendingImport` until material is imported under a one-time RSA wrapping key
//! (`docs/byok.md`).
//!
//! 1. [`GetParametersForImportRequest`] → [`GetParametersForImportResponse`]: a fresh RSA
//!    public key (DER `SubjectPublicKeyInfo`) and an opaque import token, valid for
//!    [`IMPORT_PARAMETERS_LIFETIME`].
//! 2. The caller wraps its 32-byte AES-256 material with RSAES-OAEP-SHA-256 under that key.
//! 3. [`ImportKeyMaterialRequest`] sends the wrapped material and the token; the key becomes
//!    `Enabled` (optionally until [`ImportKeyMaterialRequest::valid_to`]).
//! 4. [`DeleteImportedKeyMaterialRequest`] forgets the material; the key is `PendingImport`
//!    again and accepts the *same* material again (never different material).
//!
//! Backends see only [`ImportMaterial`]: the unwrapped material, checked by the manager.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

use crate::error::{KmsError, Result};
use crate::secret::SecretBytes;
use crate::serde_helpers::base64_bytes;
use crate::types::validate_key_id;

/// How long import parameters (the wrapping key and its token) stay valid: 24 hours, as AWS KMS.
pub const IMPORT_PARAMETERS_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// Length of imported key material: an AES-256 key.
pub const IMPORT_MATERIAL_LEN: usize = 32;

/// Length of a material fingerprint (HMAC-SHA256, `docs/byok.md`).
pub const MATERIAL_FINGERPRINT_LEN: usize = 32;

/// The RSA wrapping key's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WrappingKeySpec {
    /// RSA with a 3072-bit modulus.
    Rsa3072,
    /// RSA with a 4096-bit modulus (the default).
    #[default]
    Rsa4096,
}

impl WrappingKeySpec {
    /// The wire name (`rsa_3072`, `rsa_4096`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rsa3072 => "rsa_3072",
            Self::Rsa4096 => "rsa_4096",
        }
    }

    /// The modulus size in bits.
    pub const fn bits(self) -> usize {
        match self {
            Self::Rsa3072 => 3072,
            Self::Rsa4096 => 4096,
        }
    }
}

impl FromStr for WrappingKeySpec {
    type Err = KmsError;

    /// Accepts the wire names, the CLI's `rsa-3072` and AWS's `RSA_3072`; RSA-2048 is refused
    /// (below the 3072-bit floor of `docs/byok.md`).
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "rsa_3072" => Ok(Self::Rsa3072),
            "rsa_4096" => Ok(Self::Rsa4096),
            "rsa_2048" => Err(KmsError::invalid_request(
                "wrapping_key_spec",
                "rsa_2048 is refused: wrapping keys are RSA-3072 or RSA-4096",
            )),
            _ => Err(KmsError::invalid_request("wrapping_key_spec", "expected rsa_3072 or rsa_4096")),
        }
    }
}

/// How the material is wrapped under the RSA key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum WrappingAlgorithm {
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256, empty label (AWS `RSAES_OAEP_SHA_256`).
    #[default]
    RsaesOaepSha256,
}

impl WrappingAlgorithm {
    /// The wire name (`rsaes_oaep_sha_256`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RsaesOaepSha256 => "rsaes_oaep_sha_256",
        }
    }
}

impl FromStr for WrappingAlgorithm {
    type Err = KmsError;

    /// Accepts `rsaes_oaep_sha_256` (any case, AWS's `RSAES_OAEP_SHA_256`); SHA-1 OAEP,
    /// PKCS#1 v1.5 and the hybrid AES-KWP schemes are refused by name.
    fn from_str(s: &str) -> Result<Self> {
        let name = s.to_ascii_lowercase().replace('-', "_");
        match name.as_str() {
            "rsaes_oaep_sha_256" => Ok(Self::RsaesOaepSha256),
            "rsaes_oaep_sha_1" => Err(KmsError::invalid_request(
                "wrapping_algorithm",
                "rsaes_oaep_sha_1 is refused (SHA-1); use rsaes_oaep_sha_256",
            )),
            "rsaes_pkcs1_v1_5" => Err(KmsError::invalid_request(
                "wrapping_algorithm",
                "rsaes_pkcs1_v1_5 is refused (padding oracles); use rsaes_oaep_sha_256",
            )),
            _ => Err(KmsError::invalid_request("wrapping_algorithm", "only rsaes_oaep_sha_256 is supported")),
        }
    }
}

macro_rules! serde_by_name {
    ($ty:ty) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let name = String::deserialize(deserializer)?;
                name.parse().map_err(|e: KmsError| serde::de::Error::custom(e.to_string()))
            }
        }
    };
}
serde_by_name!(WrappingKeySpec);
serde_by_name!(WrappingAlgorithm);

/// `POST /kms/v1/keys/{key_id}/import-parameters`: a fresh wrapping key and import token
/// for an external key (`PendingImport`, `Enabled` or `Disabled`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetParametersForImportRequest {
    /// The external key the material is for.
    pub key_id: String,
    /// The RSA key size (`rsa_4096` when absent).
    #[serde(default)]
    pub wrapping_key_spec: WrappingKeySpec,
    /// The wrapping algorithm (`rsaes_oaep_sha_256`, the only one).
    #[serde(default)]
    pub wrapping_algorithm: WrappingAlgorithm,
}

/// `GetParametersForImport` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetParametersForImportResponse {
    /// The key the parameters are for.
    pub key_id: String,
    /// The RSA public wrapping key, DER `SubjectPublicKeyInfo` (base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub public_key: Vec<u8>,
    /// Opaque; passed back unchanged with the wrapped material (base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub import_token: Vec<u8>,
    /// After this instant the token and wrapping key are refused.
    #[serde(with = "time::serde::rfc3339")]
    pub parameters_valid_to: OffsetDateTime,
}

/// `POST /kms/v1/keys/{key_id}/import-material`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportKeyMaterialRequest {
    /// The external key.
    pub key_id: String,
    /// The 32-byte material wrapped with RSAES-OAEP-SHA-256 under the parameters' public
    /// key (base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub encrypted_key_material: Vec<u8>,
    /// The token of the same `GetParametersForImport` answer (base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub import_token: Vec<u8>,
    /// When the material expires: the key is then `PendingImport` and its material deleted.
    /// `None`: it never expires.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub valid_to: Option<OffsetDateTime>,
    /// Import as a new version of a key that has material (made current; older versions keep
    /// decrypting), instead of (re)importing the key's own material.
    #[serde(default)]
    pub new_version: bool,
}

impl ImportKeyMaterialRequest {
    /// Checks what needs neither the token nor the key: the key id and that `valid_to`, if
    /// any, is after `now`.
    pub fn validate(&self, now: OffsetDateTime) -> Result<()> {
        validate_key_id("key_id", &self.key_id)?;
        if self.encrypted_key_material.is_empty() {
            return Err(KmsError::invalid_request("encrypted_key_material", "must not be empty"));
        }
        if self.import_token.is_empty() {
            return Err(KmsError::invalid_request("import_token", "must not be empty"));
        }
        if let Some(valid_to) = self.valid_to
            && valid_to <= now
        {
            return Err(KmsError::invalid_request("valid_to", "must be in the future"));
        }
        Ok(())
    }
}

/// The body of `POST /kms/v1/keys/{key_id}/import-parameters` (may be empty: `{}`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportParametersBody {
    /// The RSA key size (`rsa_4096` when absent).
    #[serde(default)]
    pub wrapping_key_spec: WrappingKeySpec,
    /// The wrapping algorithm (`rsaes_oaep_sha_256`, the only one).
    #[serde(default)]
    pub wrapping_algorithm: WrappingAlgorithm,
}

impl ImportParametersBody {
    /// The request for `key_id` (from the path).
    pub fn into_request(self, key_id: String) -> GetParametersForImportRequest {
        GetParametersForImportRequest {
            key_id,
            wrapping_key_spec: self.wrapping_key_spec,
            wrapping_algorithm: self.wrapping_algorithm,
        }
    }
}

/// The body of `POST /kms/v1/keys/{key_id}/import-material`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportMaterialBody {
    /// See [`ImportKeyMaterialRequest::encrypted_key_material`].
    #[serde(with = "base64_bytes")]
    pub encrypted_key_material: Vec<u8>,
    /// See [`ImportKeyMaterialRequest::import_token`].
    #[serde(with = "base64_bytes")]
    pub import_token: Vec<u8>,
    /// See [`ImportKeyMaterialRequest::valid_to`].
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub valid_to: Option<OffsetDateTime>,
    /// See [`ImportKeyMaterialRequest::new_version`].
    #[serde(default)]
    pub new_version: bool,
}

impl ImportMaterialBody {
    /// The request for `key_id` (from the path).
    pub fn into_request(self, key_id: String) -> ImportKeyMaterialRequest {
        ImportKeyMaterialRequest {
            key_id,
            encrypted_key_material: self.encrypted_key_material,
            import_token: self.import_token,
            valid_to: self.valid_to,
            new_version: self.new_version,
        }
    }
}

/// `DELETE /kms/v1/keys/{key_id}/import-material`: the key returns to `PendingImport`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteImportedKeyMaterialRequest {
    /// The external key.
    pub key_id: String,
}

/// What a backend receives for `import_key_material`: material already unwrapped and checked
/// (32 bytes) by the manager, with its fingerprint.
///
/// The backend makes the key `Enabled` with it, as its current material (or, with
/// `new_version`, as a new current version), and keeps only the fingerprint once the material
/// is deleted, so it can refuse different material later
/// ([`ImportRefusal::IncorrectKeyMaterial`]).
pub struct ImportMaterial {
    /// The external key.
    pub key_id: String,
    /// The 32-byte AES-256 material.
    pub material: SecretBytes,
    /// `HMAC-SHA256(material, "kms-byok-fingerprint-v1" ‖ 0x00 ‖ key_id)` (`docs/byok.md`).
    pub fingerprint: [u8; MATERIAL_FINGERPRINT_LEN],
    /// When the material expires (`None`: never).
    pub valid_to: Option<OffsetDateTime>,
    /// Add as a new version rather than (re)import the key's own material.
    pub new_version: bool,
}

impl fmt::Debug for ImportMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportMaterial")
            .field("key_id", &self.key_id)
            .field("material", &self.material)
            .field("valid_to", &self.valid_to)
            .field("new_version", &self.new_version)
            .finish_non_exhaustive()
    }
}

/// Why an import of key material was refused ([`KmsError::ImportRefused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ImportRefusal {
    /// The token is unknown, was already used, or belongs to another key.
    InvalidImportToken,
    /// The token (and its wrapping key) expired; ask for new parameters.
    ExpiredImportToken,
    /// The key had other material: only the same material may be imported again (or use
    /// `new_version`).
    IncorrectKeyMaterial,
    /// The key's origin is not `external`: kms generated its material.
    NotExternalKey,
    /// `new_version` on a key that has no material yet: import its first material first.
    NoMaterialYet,
}

impl ImportRefusal {
    /// The stable error code (`invalid_import_token`, ...) in HTTP error bodies.
    pub const fn code(self) -> &'static str {
        match self {
            Self::InvalidImportToken => "invalid_import_token",
            Self::ExpiredImportToken => "expired_import_token",
            Self::IncorrectKeyMaterial => "incorrect_key_material",
            Self::NotExternalKey => "not_external_key",
            Self::NoMaterialYet => "no_key_material",
        }
    }
}

impl fmt::Display for ImportRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidImportToken => "the import token is not valid for this key (unknown, used or another key's)",
            Self::ExpiredImportToken => "the import parameters expired; ask for new ones",
            Self::IncorrectKeyMaterial => {
                "the key had different material; only the same material can be imported again"
            }
            Self::NotExternalKey => "the key's origin is not external",
            Self::NoMaterialYet => "the key has no material yet; import its first material without new_version",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_every_spelling_and_weak_choices_are_refused_by_name() {
        assert_eq!("rsa-3072".parse::<WrappingKeySpec>().unwrap(), WrappingKeySpec::Rsa3072);
        assert_eq!("RSA_4096".parse::<WrappingKeySpec>().unwrap(), WrappingKeySpec::Rsa4096);
        assert_eq!("RSAES_OAEP_SHA_256".parse::<WrappingAlgorithm>().unwrap(), WrappingAlgorithm::RsaesOaepSha256);
        let sha1 = "RSAES_OAEP_SHA_1".parse::<WrappingAlgorithm>().unwrap_err();
        assert!(
            matches!(&sha1, KmsError::InvalidRequest { field, message }
            if field == "wrapping_algorithm" && message.contains("SHA-1")),
            "{sha1:?}"
        );
        let small = "RSA_2048".parse::<WrappingKeySpec>().unwrap_err();
        assert!(matches!(&small, KmsError::InvalidRequest { field, .. } if field == "wrapping_key_spec"));
    }

    #[test]
    fn requests_round_trip_through_json_with_defaults() {
        let request: GetParametersForImportRequest = serde_json::from_str(r#"{"key_id":"k"}"#).unwrap();
        assert_eq!(request.wrapping_key_spec, WrappingKeySpec::Rsa4096);
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(json, r#"{"key_id":"k","wrapping_key_spec":"rsa_4096","wrapping_algorithm":"rsaes_oaep_sha_256"}"#);
        let refused = serde_json::from_str::<GetParametersForImportRequest>(
            r#"{"key_id":"k","wrapping_algorithm":"rsaes_oaep_sha_1"}"#,
        )
        .unwrap_err();
        assert!(refused.to_string().contains("SHA-1"), "{refused}");

        let import: ImportKeyMaterialRequest =
            serde_json::from_str(r#"{"key_id":"k","encrypted_key_material":"AQID","import_token":"BAU="}"#).unwrap();
        assert_eq!(
            (import.encrypted_key_material.as_slice(), import.valid_to, import.new_version),
            (&[1, 2, 3][..], None, false)
        );
    }

    #[test]
    fn import_requests_are_validated_before_any_crypto() {
        let now = OffsetDateTime::from_unix_timestamp(1_790_848_800).unwrap();
        let request = ImportKeyMaterialRequest {
            key_id: "k".into(),
            encrypted_key_material: vec![1],
            import_token: vec![2],
            valid_to: Some(now + time::Duration::hours(1)),
            new_version: false,
        };
        request.validate(now).unwrap();
        let field = |r: ImportKeyMaterialRequest| match r.validate(now) {
            Err(KmsError::InvalidRequest { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(ImportKeyMaterialRequest { valid_to: Some(now), ..request.clone() }), "valid_to");
        assert_eq!(field(ImportKeyMaterialRequest { import_token: vec![], ..request.clone() }), "import_token");
        assert_eq!(
            field(ImportKeyMaterialRequest { encrypted_key_material: vec![], ..request.clone() }),
            "encrypted_key_material"
        );
        assert_eq!(field(ImportKeyMaterialRequest { key_id: "a/b".into(), ..request }), "key_id");
    }

    #[test]
    fn import_material_debug_hides_the_material_and_fingerprint() {
        let m = ImportMaterial {
            key_id: "k".into(),
            material: SecretBytes::new(vec![0xAB; 32]),
            fingerprint: [0xCD; 32],
            valid_to: None,
            new_version: false,
        };
        let shown = format!("{m:?}");
        assert!(!shown.contains("171") && !shown.contains("205"), "{shown}");
    }
}
