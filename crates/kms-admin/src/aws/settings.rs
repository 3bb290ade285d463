//! [`AwsSettings`]: the `[server.aws]` table: region, partition and account for ARNs, and the
//! AWS access keys of identities (secrets sealed with the configuration seal key).

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::store::ConfigStore;

/// The AWS KMS protocol's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsSettings {
    /// Whether `POST /` with `X-Amz-Target: TrentService.*` is served (default true).
    pub enabled: bool,
    /// The region requests must be signed for and ARNs name (default `us-east-1`).
    pub region: String,
    /// The ARN partition (default `aws`).
    pub partition: String,
    /// The ARN account, 12 digits (default `000000000000`).
    pub account_id: String,
    /// Access keys, each belonging to a configured identity.
    pub access_keys: Vec<AccessKeyConfig>,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            region: "us-east-1".into(),
            partition: "aws".into(),
            account_id: "000000000000".into(),
            access_keys: Vec::new(),
        }
    }
}

/// One AWS access key of an identity.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyConfig {
    /// The identity (in `[[server.identities]]`) the key signs as.
    pub identity: String,
    /// The access key id (`AKIA...`).
    pub access_key_id: String,
    /// The secret, sealed (`sealed:v1:...`, from `kms aws-key generate`).
    pub secret_access_key: String,
}

impl fmt::Debug for AccessKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKeyConfig")
            .field("identity", &self.identity)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl AccessKeyConfig {
    /// The associated data the secret is sealed under: it binds the secret to its key id.
    pub fn seal_field(access_key_id: &str) -> String {
        format!("server.aws.access_keys.{access_key_id}.secret_access_key")
    }
}

impl AwsSettings {
    /// Checks the names; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !plain(&self.region) {
            return Err("server.aws.region: letters, digits and - only".into());
        }
        if !plain(&self.partition) {
            return Err("server.aws.partition: letters, digits and - only".into());
        }
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err("server.aws.account_id: must be 12 digits".into());
        }
        Ok(())
    }
}

/// A fresh access key: `AKIA` + 16 characters of A-Z2-7, and a 40-character secret.
pub fn generate_access_key() -> (String, Zeroizing<String>) {
    let mut id_bytes = [0u8; 16];
    kms_crypto::rand::fill(&mut id_bytes).expect("the system random generator failed");
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let id: String = id_bytes.iter().map(|b| ALPHABET[(b & 31) as usize] as char).collect();
    let mut secret = Zeroizing::new([0u8; 30]);
    kms_crypto::rand::fill(secret.as_mut()).expect("the system random generator failed");
    let secret = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(secret.as_ref()));
    (format!("AKIA{id}"), secret)
}

/// The access keys opened: access key id → (identity name, secret).
#[derive(Default)]
pub struct Credentials {
    keys: HashMap<String, (String, Zeroizing<Vec<u8>>)>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Credentials").field("access_key_ids", &ids).finish()
    }
}

impl Credentials {
    /// Opens every configured key with `store`'s seal key. `known` says whether an identity
    /// name is configured. Refuses duplicates, keys of unknown identities and secrets that do not
    /// unseal; keys configured without a store to open them are refused too.
    pub fn open(
        settings: &AwsSettings,
        store: Option<&ConfigStore>,
        known: impl Fn(&str) -> bool,
    ) -> Result<Self, String> {
        let mut keys = HashMap::new();
        for key in &settings.access_keys {
            let at = format!("server.aws.access_keys {}", key.access_key_id);
            if key.access_key_id.is_empty() || !key.access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("{at}: the access key id must be letters and digits"));
            }
            if !known(&key.identity) {
                return Err(format!("{at}: no identity is named {}", key.identity));
            }
            let store = store.ok_or_else(|| format!("{at}: sealed secrets need the data folder's seal key"))?;
            let secret = store
                .unseal_secret(&key.secret_access_key, &AccessKeyConfig::seal_field(&key.access_key_id))
                .map_err(|e| format!("{at}: {e}"))?;
            let secret = Zeroizing::new(secret.as_bytes().to_vec());
            if keys.insert(key.access_key_id.clone(), (key.identity.clone(), secret)).is_some() {
                return Err(format!("{at}: is configured twice"));
            }
        }
        Ok(Self { keys })
    }

    /// The identity name and secret of an access key id.
    pub fn lookup(&self, access_key_id: &str) -> Option<(&str, &[u8])> {
        self.keys.get(access_key_id).map(|(name, secret)| (name.as_str(), secret.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(tag: &str) -> (std::path::PathBuf, ConfigStore) {
        let dir = std::env::temp_dir().join(format!("kms-aws-settings-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = ConfigStore::open(&dir, None).unwrap();
        (dir, store)
    }

    #[test]
    fn generated_keys_look_like_aws_keys_and_differ() {
        let (a, sa) = generate_access_key();
        let (b, sb) = generate_access_key();
        assert!(a.starts_with("AKIA") && a.len() == 20 && a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(sa.len(), 40);
        assert_ne!(a, b);
        assert_ne!(*sa, *sb);
    }

    #[test]
    fn sealed_secrets_open_only_for_their_key_id() {
        let (dir, store) = store("open");
        let (id, secret) = generate_access_key();
        let sealed = store.seal_secret(&secret, &AccessKeyConfig::seal_field(&id)).unwrap();
        assert!(!sealed.contains(secret.as_str()));
        let mut settings = AwsSettings::default();
        settings.access_keys.push(AccessKeyConfig {
            identity: "admin".into(),
            access_key_id: id.clone(),
            secret_access_key: sealed.clone(),
        });
        let creds = Credentials::open(&settings, Some(&store), |n| n == "admin").unwrap();
        assert_eq!(creds.lookup(&id), Some(("admin", secret.as_bytes())));
        assert!(!format!("{creds:?}").contains(secret.as_str()));
        assert!(!format!("{settings:?}").contains(&sealed));

        assert!(Credentials::open(&settings, Some(&store), |_| false).unwrap_err().contains("no identity"));
        assert!(Credentials::open(&settings, None, |_| true).unwrap_err().contains("seal key"));
        // The same sealed secret moved to another key id does not open.
        settings.access_keys[0].access_key_id = "AKIAOTHER".into();
        let unseal = "the sealed secret at server.aws.access_keys.AKIAOTHER.secret_access_key does not open";
        let err = Credentials::open(&settings, Some(&store), |_| true).unwrap_err();
        assert!(err.starts_with("server.aws.access_keys AKIAOTHER: ") && err.contains(unseal), "{err}");
        // A secret in the clear is refused.
        settings.access_keys[0].secret_access_key = secret.to_string();
        let err = Credentials::open(&settings, Some(&store), |_| true).unwrap_err();
        assert!(err.starts_with("server.aws.access_keys AKIAOTHER: ") && err.contains(unseal), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn names_are_checked() {
        AwsSettings::default().validate().unwrap();
        let bad = AwsSettings { account_id: "12".into(), ..AwsSettings::default() };
        assert!(bad.validate().unwrap_err().contains("account_id"));
        let bad = AwsSettings { region: "us east".into(), ..AwsSettings::default() };
        assert!(bad.validate().unwrap_err().contains("region"));
    }
}
