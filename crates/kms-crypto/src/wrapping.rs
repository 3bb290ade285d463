//! Import of key material (BYOK): the one-time RSA wrapping key, the client-side wrap, and the
//! material fingerprint (`docs/byok.md`).
//!
//! - [`ImportWrappingKey`]: a fresh RSA-3072/4096 key pair made for one import; its public half
//!   leaves as DER `SubjectPublicKeyInfo`, its private half never leaves the process (not
//!   `Clone`, not serializable, redacted in `Debug`).
//! - [`wrap_material`]: what a client does with the public key: RSAES-OAEP with SHA-256 and
//!   MGF1-SHA-256, empty label (AWS `RSAES_OAEP_SHA_256`, Python `cryptography`'s
//!   `OAEP(MGF1(SHA256()), SHA256(), None)`).
//! - [`material_fingerprint`]: `HMAC-SHA256(key = material, "kms-byok-fingerprint-v1" ‖ 0x00 ‖
//!   key_id)`, kept by a backend after the material is deleted so that only the same material
//!   can be imported again. It reveals nothing of the material without the material.
//!
//! Unwrapping fails opaquely ([`CryptoError::Unauthenticated`]) for a wrong key, tampered or
//! truncated bytes: it must not become a padding oracle.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey,
};
use kms_types::byok::{MATERIAL_FINGERPRINT_LEN, WrappingKeySpec};
use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::mac;

/// The label of the material fingerprint (`docs/byok.md`); the version is part of it.
pub const FINGERPRINT_LABEL: &[u8] = b"kms-byok-fingerprint-v1";

/// A one-time RSA key pair that unwraps imported material. See the [module docs](self).
pub struct ImportWrappingKey {
    spec: WrappingKeySpec,
    private: OaepPrivateDecryptingKey,
    public_der: Vec<u8>,
}

impl std::fmt::Debug for ImportWrappingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportWrappingKey").field("spec", &self.spec).finish_non_exhaustive()
    }
}

impl ImportWrappingKey {
    /// Generates a fresh key pair of `spec` (RSA-4096 takes around a second).
    pub fn generate(spec: WrappingKeySpec) -> Result<Self, CryptoError> {
        let size = match spec {
            WrappingKeySpec::Rsa3072 => KeySize::Rsa3072,
            WrappingKeySpec::Rsa4096 => KeySize::Rsa4096,
        };
        let private = PrivateDecryptingKey::generate(size).map_err(|_| CryptoError::RandomUnavailable)?;
        let public_der = private.public_key().as_der().map_err(|_| CryptoError::RandomUnavailable)?.as_ref().to_vec();
        let private = OaepPrivateDecryptingKey::new(private).map_err(|_| CryptoError::RandomUnavailable)?;
        Ok(Self { spec, private, public_der })
    }

    /// The key size.
    pub fn spec(&self) -> WrappingKeySpec {
        self.spec
    }

    /// The public key, DER `SubjectPublicKeyInfo` (what `GetParametersForImport` returns).
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_der
    }

    /// Unwraps RSAES-OAEP-SHA-256 `wrapped` material. Any failure (another key's ciphertext,
    /// tampered, truncated, wrong length) is [`CryptoError::Unauthenticated`]; checking the
    /// material's length is the caller's business.
    pub fn unwrap_material(&self, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if wrapped.len() != self.private.key_size_bytes() {
            return Err(CryptoError::Unauthenticated);
        }
        let mut out = Zeroizing::new(vec![0u8; self.private.min_output_size()]);
        let len = self
            .private
            .decrypt(&OAEP_SHA256_MGF1SHA256, wrapped, &mut out, None)
            .map_err(|_| CryptoError::Unauthenticated)?
            .len();
        out.truncate(len);
        Ok(out)
    }
}

/// Wraps `material` under `public_key_der` (DER `SubjectPublicKeyInfo` of an RSA-3072 or
/// RSA-4096 key) with RSAES-OAEP-SHA-256: what a client of `GetParametersForImport` does.
/// A key that is not RSA, or smaller than 3072 bits, is [`CryptoError::InvalidArgument`].
pub fn wrap_material(public_key_der: &[u8], material: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let public = PublicEncryptingKey::from_der(public_key_der)
        .map_err(|_| CryptoError::invalid("public_key", "not a DER SubjectPublicKeyInfo of an RSA key"))?;
    if public.key_size_bits() < WrappingKeySpec::Rsa3072.bits() {
        return Err(CryptoError::invalid("public_key", "wrapping keys are RSA-3072 or RSA-4096"));
    }
    let public = OaepPublicEncryptingKey::new(public)
        .map_err(|_| CryptoError::invalid("public_key", "not usable for RSAES-OAEP"))?;
    if material.len() > public.max_plaintext_size(&OAEP_SHA256_MGF1SHA256) {
        return Err(CryptoError::invalid("material", "too long for the wrapping key"));
    }
    let mut out = vec![0u8; public.ciphertext_size()];
    let len = public
        .encrypt(&OAEP_SHA256_MGF1SHA256, material, &mut out, None)
        .map_err(|_| CryptoError::RandomUnavailable)?
        .len();
    out.truncate(len);
    Ok(out)
}

/// The fingerprint of `material` imported into `key_id`:
/// `HMAC-SHA256(key = material, FINGERPRINT_LABEL ‖ 0x00 ‖ key_id)`.
pub fn material_fingerprint(key_id: &str, material: &[u8]) -> [u8; MATERIAL_FINGERPRINT_LEN] {
    let mut data = Vec::with_capacity(FINGERPRINT_LABEL.len() + 1 + key_id.len());
    data.extend_from_slice(FINGERPRINT_LABEL);
    data.push(0);
    data.extend_from_slice(key_id.as_bytes());
    mac::hmac_sha256(material, &data)
}

/// Whether `material` has `fingerprint` for `key_id`, compared in constant time.
pub fn fingerprint_matches(key_id: &str, material: &[u8], fingerprint: &[u8]) -> bool {
    let mut data = Vec::with_capacity(FINGERPRINT_LABEL.len() + 1 + key_id.len());
    data.extend_from_slice(FINGERPRINT_LABEL);
    data.push(0);
    data.extend_from_slice(key_id.as_bytes());
    mac::verify_hmac_sha256(material, &data, fingerprint).is_ok()
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::vectors::hex;

    /// One key of each size for the whole module (generation is slow).
    fn key(spec: WrappingKeySpec) -> &'static ImportWrappingKey {
        static K3072: OnceLock<ImportWrappingKey> = OnceLock::new();
        static K4096: OnceLock<ImportWrappingKey> = OnceLock::new();
        let cell = match spec {
            WrappingKeySpec::Rsa3072 => &K3072,
            _ => &K4096,
        };
        cell.get_or_init(|| ImportWrappingKey::generate(spec).unwrap())
    }

    #[test]
    fn material_wrapped_under_the_public_key_unwraps_with_both_sizes() {
        for spec in [WrappingKeySpec::Rsa3072, WrappingKeySpec::Rsa4096] {
            let key = key(spec);
            let wrapped = wrap_material(key.public_key_der(), &[7u8; 32]).unwrap();
            assert_eq!(wrapped.len(), spec.bits() / 8);
            assert_eq!(key.unwrap_material(&wrapped).unwrap().as_slice(), &[7u8; 32]);
            // OAEP is randomized: the same material wraps differently each time.
            assert_ne!(wrapped, wrap_material(key.public_key_der(), &[7u8; 32]).unwrap());
            assert_eq!(PublicEncryptingKey::from_der(key.public_key_der()).unwrap().key_size_bits(), spec.bits());
        }
    }

    #[test]
    fn wrong_key_tampered_and_truncated_wraps_fail_opaquely() {
        let (a, b) = (key(WrappingKeySpec::Rsa3072), key(WrappingKeySpec::Rsa4096));
        let for_b = wrap_material(b.public_key_der(), &[1u8; 32]).unwrap();
        assert_eq!(a.unwrap_material(&for_b).unwrap_err(), CryptoError::Unauthenticated);
        let b2 = ImportWrappingKey::generate(WrappingKeySpec::Rsa3072).unwrap();
        let for_a = wrap_material(a.public_key_der(), &[1u8; 32]).unwrap();
        assert_eq!(b2.unwrap_material(&for_a).unwrap_err(), CryptoError::Unauthenticated);
        let mut tampered = for_a.clone();
        tampered[100] ^= 1;
        assert_eq!(a.unwrap_material(&tampered).unwrap_err(), CryptoError::Unauthenticated);
        assert_eq!(a.unwrap_material(&for_a[1..]).unwrap_err(), CryptoError::Unauthenticated);
        assert_eq!(a.unwrap_material(&[]).unwrap_err(), CryptoError::Unauthenticated);
    }

    #[test]
    fn unwrap_returns_any_length_the_caller_checks() {
        let key = key(WrappingKeySpec::Rsa3072);
        for len in [16, 31, 33] {
            let wrapped = wrap_material(key.public_key_der(), &vec![9u8; len]).unwrap();
            assert_eq!(key.unwrap_material(&wrapped).unwrap().len(), len);
        }
    }

    #[test]
    fn wrap_refuses_keys_that_are_not_rsa_3072_or_more() {
        let small = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let der = small.public_key().as_der().unwrap().as_ref().to_vec();
        assert!(matches!(wrap_material(&der, &[0; 32]), Err(CryptoError::InvalidArgument { field: "public_key", .. })));
        assert!(matches!(
            wrap_material(b"not der", &[0; 32]),
            Err(CryptoError::InvalidArgument { field: "public_key", .. })
        ));
        let big = vec![0u8; 1000];
        let key = key(WrappingKeySpec::Rsa3072);
        assert!(matches!(
            wrap_material(key.public_key_der(), &big),
            Err(CryptoError::InvalidArgument { field: "material", .. })
        ));
    }

    #[test]
    fn debug_shows_no_key() {
        let shown = format!("{:?}", key(WrappingKeySpec::Rsa3072));
        assert_eq!(shown, "ImportWrappingKey { spec: Rsa3072, .. }");
    }

    /// The known-answer vector of `docs/byok.md`.
    #[test]
    fn fingerprint_known_answer() {
        let material: Vec<u8> = (0u8..32).collect();
        let fingerprint = material_fingerprint("byok-example", &material);
        assert_eq!(fingerprint.to_vec(), hex("4adca4690e199fbbb0822fe8a1845e5e587a94e44ddc5e0de3c59e7b4e30d3b8"));
        assert!(fingerprint_matches("byok-example", &material, &fingerprint));
        assert!(!fingerprint_matches("byok-other", &material, &fingerprint));
        let mut other = material.clone();
        other[0] ^= 1;
        assert!(!fingerprint_matches("byok-example", &other, &fingerprint));
        assert!(!fingerprint_matches("byok-example", &material, &fingerprint[..31]));
    }
}
