//! The master key: where it comes from, and the record key-encryption key derived from it.
//!
//! The master key never touches the key directory. What the directory holds is a *verifier
//! record* (`.verifier.json`): the protection mode, a random salt, the Argon2id parameters
//! for a passphrase, and a constant sealed under the derived key-encryption key. Opening that
//! constant at start tells a wrong master key apart from a corrupt record, with a clear error.
//!
//! Derivation (format version 1):
//! - root = the 32 decoded bytes of a key (`Key`, `Env`, `File`), or
//!   Argon2id(passphrase, salt, m, t, p) → 32 bytes for a `Passphrase`;
//! - record KEK = HKDF-SHA256(salt, root, info = `"kms-local/v1/record-kek"`) → 32 bytes.

use std::io;
use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_types::config::MasterKeySource;
use kms_types::error::KmsError;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use kms_crypto::aead::{Algorithm, RandomNonceKey};

use crate::dir::{KeyDir, VERIFIER_FILE, io_error};

const FIELD: &str = "backend_config.master_key";
const VERIFIER_FORMAT: &str = "kms-local-verifier";
const VERIFIER_FORMAT_VERSION: u16 = 1;
const VERIFIER_AAD: &[u8] = b"kms-local/v1/verifier";
const VERIFIER_PLAINTEXT: &[u8] = b"kms-local verifier: the master key is right";
const KEK_INFO: &[u8] = b"kms-local/v1/record-kek";
const SALT_LEN: usize = 16;

/// The master secret as configured, before derivation.
pub(crate) enum MasterSecret {
    /// 32 random bytes.
    Key(Zeroizing<[u8; 32]>),
    /// A passphrase to stretch with Argon2id.
    Passphrase(Zeroizing<String>),
    /// No master key: records are stored in the clear (development only).
    InsecurePlaintext,
}

impl std::fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Key(_) => "MasterSecret::Key([REDACTED])",
            Self::Passphrase(_) => "MasterSecret::Passphrase([REDACTED])",
            Self::InsecurePlaintext => "MasterSecret::InsecurePlaintext",
        })
    }
}

impl MasterSecret {
    /// Reads the secret from its configured source.
    pub(crate) fn resolve(source: &MasterKeySource) -> Result<Self, KmsError> {
        match source {
            MasterKeySource::Key { key } => decode_key(&format!("{FIELD}.key"), key.expose_secret()).map(Self::Key),
            MasterKeySource::Passphrase { passphrase } => {
                Ok(Self::Passphrase(Zeroizing::new(passphrase.expose_secret().to_owned())))
            }
            MasterKeySource::Env { var } => {
                let field = format!("{FIELD}.var");
                let value = Zeroizing::new(std::env::var(var).map_err(|e| {
                    let why = match e {
                        std::env::VarError::NotPresent => "is not set",
                        std::env::VarError::NotUnicode(_) => "is not valid UTF-8",
                    };
                    KmsError::configuration(&field, format!("environment variable {var} {why}"))
                })?);
                decode_key(&field, &value).map(Self::Key)
            }
            MasterKeySource::File { path } => {
                let field = format!("{FIELD}.path");
                let shown = path.display();
                let meta = std::fs::metadata(path)
                    .map_err(|e| KmsError::configuration(&field, format!("cannot read {shown}: {e}")))?;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(KmsError::configuration(
                        &field,
                        format!("{shown} is accessible by group or others (mode {mode:o}); it must be 0600 or 0400"),
                    ));
                }
                let text = Zeroizing::new(
                    std::fs::read_to_string(path)
                        .map_err(|e| KmsError::configuration(&field, format!("cannot read {shown}: {e}")))?,
                );
                decode_key(&field, &text).map(Self::Key)
            }
            MasterKeySource::InsecurePlaintextForDevelopment => Ok(Self::InsecurePlaintext),
            other => Err(KmsError::configuration(FIELD, format!("unsupported master key source {other:?}"))),
        }
    }

    fn protection(&self) -> Protection {
        match self {
            Self::Key(_) => Protection::MasterKey,
            Self::Passphrase(_) => Protection::Passphrase,
            Self::InsecurePlaintext => Protection::InsecurePlaintextForDevelopment,
        }
    }
}

fn decode_key(field: &str, text: &str) -> Result<Zeroizing<[u8; 32]>, KmsError> {
    // The decoder's own error names the offending byte: never show it.
    let bytes = Zeroizing::new(
        STANDARD.decode(text.trim()).map_err(|_| KmsError::configuration(field, "is not valid standard base64"))?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != key.len() {
        return Err(KmsError::configuration(
            field,
            format!("must decode to 32 bytes, got {} (generate one with `openssl rand -base64 32`)", bytes.len()),
        ));
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// How a key directory's records are protected (recorded in the verifier record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Protection {
    /// Sealed under a KEK derived from a 32-byte master key.
    MasterKey,
    /// Sealed under a KEK derived from an Argon2id-stretched passphrase.
    Passphrase,
    /// Not sealed at all.
    InsecurePlaintextForDevelopment,
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Argon2Params {
    /// Memory, in KiB.
    pub(crate) m_cost_kib: u32,
    /// Passes.
    pub(crate) t_cost: u32,
    /// Lanes.
    pub(crate) p_cost: u32,
}

impl Argon2Params {
    /// What new key directories use: 64 MiB, 3 passes, 1 lane (RFC 9106's second choice,
    /// with one lane).
    pub(crate) const DEFAULT: Self = Self { m_cost_kib: 64 * 1024, t_cost: 3, p_cost: 1 };
    /// The least a verifier record may ask for (OWASP's Argon2id minimum), so that an edited
    /// verifier cannot make us derive a cheap key.
    const MINIMUM: Self = Self { m_cost_kib: 19 * 1024, t_cost: 2, p_cost: 1 };
    /// The most a verifier record may ask for (1 GiB, 16 passes, 16 lanes), so that an edited
    /// verifier cannot make start allocate terabytes or run for hours (Argon2id itself accepts
    /// up to `u32::MAX` KiB and passes).
    const MAXIMUM: Self = Self { m_cost_kib: 1024 * 1024, t_cost: 16, p_cost: 16 };

    fn check(self) -> Result<Self, KmsError> {
        let (min, max) = (Self::MINIMUM, Self::MAXIMUM);
        if self.m_cost_kib < min.m_cost_kib || self.t_cost < min.t_cost || self.p_cost < min.p_cost {
            return Err(KmsError::backend(format!(
                "the verifier record asks for Argon2id parameters {self:?}, below the minimum {min:?}"
            )));
        }
        if self.m_cost_kib > max.m_cost_kib || self.t_cost > max.t_cost || self.p_cost > max.p_cost {
            return Err(KmsError::backend(format!(
                "the verifier record asks for Argon2id parameters {self:?}, above the maximum {max:?}"
            )));
        }
        Ok(self)
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifierFile {
    format: String,
    format_version: u16,
    protection: Protection,
    #[serde(with = "kms_types::serde_helpers::base64_bytes")]
    salt: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    argon2id: Option<Argon2Params>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_base64")]
    check: Option<Vec<u8>>,
}

mod opt_base64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(value: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => s.serialize_str(&STANDARD.encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| STANDARD.decode(text).map_err(|_| D::Error::custom("invalid base64")))
            .transpose()
    }
}

/// What seals key records in this directory: a KEK, or nothing (development mode).
#[derive(Debug)]
pub(crate) enum RecordProtection {
    /// Records are sealed under this key-encryption key.
    Sealed(Box<RandomNonceKey>),
    /// Records are stored in the clear.
    InsecurePlaintext,
}

impl RecordProtection {
    /// Opens the directory's verifier record with `secret`, or writes one if the directory is
    /// new (`has_records` false). A wrong master key, a mismatched protection mode, a missing
    /// verifier beside existing records and a corrupt verifier are all refused here.
    pub(crate) fn establish(dir: &KeyDir, secret: MasterSecret, has_records: bool) -> Result<Self, KmsError> {
        let shown = dir.path().join(VERIFIER_FILE);
        let shown = shown.display();
        if dir.exists(VERIFIER_FILE).map_err(|e| io_error(format!("cannot inspect {shown}"), e))? {
            let bytes = dir.read(VERIFIER_FILE).map_err(|e| io_error(format!("cannot read {shown}"), e))?;
            return Self::from_verifier(&bytes, secret, &shown.to_string());
        }
        if has_records {
            return Err(KmsError::backend(format!(
                "key directory {} holds key records but no verifier record ({VERIFIER_FILE}); refusing to start \
                 (restore the verifier record from a backup)",
                dir.path().display()
            )));
        }
        Self::create_verifier(dir, secret, &shown.to_string())
    }

    /// Opens the verifier record `bytes` (read from a directory or a backup bundle, `shown`
    /// in messages) with `secret`: a wrong master key or a mismatched protection mode is
    /// refused (`Configuration`), a corrupt verifier too (`Backend`).
    pub(crate) fn from_verifier(bytes: &[u8], secret: MasterSecret, shown: &str) -> Result<Self, KmsError> {
        let file: VerifierFile = serde_json::from_slice(bytes)
            .map_err(|e| KmsError::backend_with_source(format!("verifier record {shown} is corrupt"), false, e))?;
        if file.format != VERIFIER_FORMAT || file.format_version != VERIFIER_FORMAT_VERSION {
            return Err(KmsError::backend(format!(
                "verifier record {shown} has unsupported format {} version {}",
                file.format, file.format_version
            )));
        }
        if file.protection != secret.protection() {
            return Err(KmsError::configuration(
                FIELD,
                format!(
                    "this key directory was created with protection `{}` but the configuration gives `{}`",
                    protection_name(file.protection),
                    protection_name(secret.protection())
                ),
            ));
        }
        let protection = derive(&secret, &file.salt, file.argon2id.map(Argon2Params::check).transpose()?)?;
        if let Self::Sealed(kek) = &protection {
            let check = file.check.as_deref().ok_or_else(|| {
                KmsError::backend(format!("verifier record {shown} has no check value; it is corrupt"))
            })?;
            let opened = kek.open(VERIFIER_AAD, check).map_err(|_| {
                KmsError::configuration(
                    FIELD,
                    format!(
                        "wrong master key: it does not open the verifier record {shown} \
                         (it was made with a different key or passphrase)"
                    ),
                )
            })?;
            if opened.as_slice() != VERIFIER_PLAINTEXT {
                return Err(KmsError::backend(format!("verifier record {shown} holds an unexpected value")));
            }
        }
        Ok(protection)
    }

    /// Writes a new verifier record for `secret` into `dir` (which has none).
    fn create_verifier(dir: &KeyDir, secret: MasterSecret, shown: &str) -> Result<Self, KmsError> {
        let mut salt = vec![0u8; SALT_LEN];
        kms_crypto::rand::fill(&mut salt)?;
        let argon2id = matches!(secret, MasterSecret::Passphrase(_)).then_some(Argon2Params::DEFAULT);
        let protection = derive(&secret, &salt, argon2id)?;
        let check = match &protection {
            Self::Sealed(kek) => Some(kek.seal(VERIFIER_AAD, VERIFIER_PLAINTEXT)?),
            Self::InsecurePlaintext => None,
        };
        let file = VerifierFile {
            format: VERIFIER_FORMAT.into(),
            format_version: VERIFIER_FORMAT_VERSION,
            protection: secret.protection(),
            salt,
            argon2id,
            check,
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| KmsError::backend_with_source("encode", false, e))?;
        dir.write_atomic(VERIFIER_FILE, &bytes, true).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => KmsError::backend(format!("{shown} appeared while starting")),
            _ => io_error(format!("cannot write {shown}"), e),
        })?;
        Ok(protection)
    }
}

fn protection_name(p: Protection) -> &'static str {
    match p {
        Protection::MasterKey => "master key",
        Protection::Passphrase => "passphrase",
        Protection::InsecurePlaintextForDevelopment => "insecure plaintext (development)",
    }
}

fn derive(secret: &MasterSecret, salt: &[u8], argon: Option<Argon2Params>) -> Result<RecordProtection, KmsError> {
    match derive_kek(secret, salt, argon)? {
        None => Ok(RecordProtection::InsecurePlaintext),
        Some(kek) => Ok(RecordProtection::Sealed(Box::new(RandomNonceKey::new(Algorithm::Aes256Gcm, kek.as_ref())?))),
    }
}

/// The record KEK's bytes (`None` in development mode).
fn derive_kek(
    secret: &MasterSecret,
    salt: &[u8],
    argon: Option<Argon2Params>,
) -> Result<Option<Zeroizing<[u8; 32]>>, KmsError> {
    let root: Zeroizing<[u8; 32]> = match secret {
        MasterSecret::InsecurePlaintext => return Ok(None),
        MasterSecret::Key(key) => key.clone(),
        MasterSecret::Passphrase(passphrase) => {
            let p = argon.ok_or_else(|| KmsError::backend("the verifier record has no Argon2id parameters"))?;
            let params = argon2::Params::new(p.m_cost_kib, p.t_cost, p.p_cost, Some(32))
                .map_err(|e| KmsError::backend(format!("bad Argon2id parameters in the verifier record: {e}")))?;
            let kdf = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
            let mut out = Zeroizing::new([0u8; 32]);
            kdf.hash_password_into(passphrase.as_bytes(), salt, out.as_mut())
                .map_err(|e| KmsError::backend(format!("Argon2id failed: {e}")))?;
            out
        }
    };
    let mut kek = Zeroizing::new([0u8; 32]);
    kms_crypto::kdf::hkdf_sha256(salt, root.as_ref(), &[KEK_INFO], kek.as_mut())?;
    Ok(Some(kek))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kms_types::secret::SecretString;

    fn key_b64(byte: u8) -> SecretString {
        STANDARD.encode([byte; 32]).into()
    }

    #[test]
    fn keys_decode_from_base64_and_report_bad_input_without_echoing_it() {
        assert!(matches!(
            MasterSecret::resolve(&MasterKeySource::Key { key: key_b64(7) }).unwrap(),
            MasterSecret::Key(k) if *k == [7; 32]
        ));
        let err = MasterSecret::resolve(&MasterKeySource::Key { key: "c2hvcnQ=".into() }).unwrap_err();
        assert!(err.to_string().contains("32 bytes, got 5"), "{err}");
        let err = MasterSecret::resolve(&MasterKeySource::Key { key: "secret!!not-base64".into() }).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn env_and_file_sources() {
        let err =
            MasterSecret::resolve(&MasterKeySource::Env { var: "KMS_LOCAL_TEST_UNSET_VAR_9".into() }).unwrap_err();
        assert!(err.to_string().contains("KMS_LOCAL_TEST_UNSET_VAR_9 is not set"), "{err}");

        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("mk");
        std::fs::write(&path, format!("{}\n", key_b64(3).expose_secret())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterSecret::resolve(&MasterKeySource::File { path: path.clone() }).unwrap_err();
        assert!(err.to_string().contains("group or others"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            MasterSecret::resolve(&MasterKeySource::File { path }).unwrap(),
            MasterSecret::Key(k) if *k == [3; 32]
        ));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = MasterSecret::Passphrase(Zeroizing::new("correct horse battery".into()));
        assert!(!format!("{secret:?}").contains("horse"));
    }

    #[test]
    fn verifier_accepts_the_right_key_and_names_a_wrong_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = KeyDir::open(tmp.path()).unwrap();
        let secret = |b| MasterSecret::resolve(&MasterKeySource::Key { key: key_b64(b) }).unwrap();
        RecordProtection::establish(&dir, secret(1), false).unwrap();
        RecordProtection::establish(&dir, secret(1), true).unwrap();
        let err = RecordProtection::establish(&dir, secret(2), true).unwrap_err();
        assert!(matches!(err, KmsError::Configuration { .. }), "{err:?}");
        assert!(err.to_string().contains("wrong master key"), "{err}");
        let err = RecordProtection::establish(&dir, MasterSecret::InsecurePlaintext, true).unwrap_err();
        assert!(err.to_string().contains("was created with protection `master key`"), "{err}");
    }

    #[test]
    fn passphrase_verifier_round_trips_and_refuses_weakened_parameters() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = KeyDir::open(tmp.path()).unwrap();
        let pass = |p: &str| MasterSecret::Passphrase(Zeroizing::new(p.into()));
        RecordProtection::establish(&dir, pass("correct horse battery staple"), false).unwrap();
        RecordProtection::establish(&dir, pass("correct horse battery staple"), true).unwrap();
        let err = RecordProtection::establish(&dir, pass("wrong horse battery staple"), true).unwrap_err();
        assert!(err.to_string().contains("wrong master key"), "{err}");

        let path = tmp.path().join(VERIFIER_FILE);
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        v["argon2id"]["m_cost_kib"] = 8.into();
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        let err = RecordProtection::establish(&dir, pass("correct horse battery staple"), true).unwrap_err();
        assert!(err.to_string().contains("below the minimum"), "{err}");
    }

    /// An edited verifier must not make start allocate terabytes or spin for hours: Argon2id
    /// itself accepts `m_cost` and `t_cost` up to `u32::MAX`.
    #[test]
    fn verifier_parameters_above_the_maximum_are_refused_before_deriving() {
        for (m, t, p) in [(u32::MAX, 3, 1), (65536, u32::MAX, 1), (u32::MAX, 3, 64)] {
            let params = Argon2Params { m_cost_kib: m, t_cost: t, p_cost: p };
            let err = params.check().unwrap_err();
            assert!(err.to_string().contains("above the maximum"), "{params:?}: {err}");
        }
        assert_eq!(Argon2Params::DEFAULT.check().unwrap(), Argon2Params::DEFAULT);
    }

    /// Known answer for the KEK derivation (HKDF-SHA256, RFC 5869; computed independently
    /// with Python's hmac/hashlib).
    #[test]
    fn kek_derivation_known_answer() {
        let kek = derive_kek(&MasterSecret::Key(Zeroizing::new([1; 32])), &[2; 16], None).unwrap().unwrap();
        let hex: String = kek.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "8974872411e7620f21831d9f9ae606e34fc2df03598db614767883bd52bc65e9");
        assert!(derive_kek(&MasterSecret::InsecurePlaintext, &[2; 16], None).unwrap().is_none());
    }

    #[test]
    fn records_without_a_verifier_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = KeyDir::open(tmp.path()).unwrap();
        let err = RecordProtection::establish(&dir, MasterSecret::Key(Zeroizing::new([1; 32])), true).unwrap_err();
        assert!(err.to_string().contains("no verifier record"), "{err}");
    }
}

#[cfg(test)]
#[path = "master_key_vectors.rs"]
mod vectors;
