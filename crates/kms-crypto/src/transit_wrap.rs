//! Wrapping AES-256 key material for OpenBao / Vault Transit's import (`transit/keys/:name/import`
//! and `import_version`), so that material reaches Transit without ever crossing the wire in
//! the clear.
//!
//! Transit publishes one RSA-4096 wrapping key per mount (`GET transit/wrapping_key`, a PEM
//! `PUBLIC KEY`, i.e. an X.509 SubjectPublicKeyInfo). The import `ciphertext` field is
//!
//! ```text
//! base64( RSA-OAEP-SHA256-MGF1-SHA256(wrapping key, label "")(ephemeral AES-256 key)   512 bytes
//!       ‖ AES-KWP(ephemeral key)(material) )                                            40 bytes for 32
//! ```
//!
//! with `hash_function` = `SHA256` in the request ([`HASH_FUNCTION`]). AES-KWP is the key wrap
//! with padding of RFC 5649 / NIST SP 800-38F. Transit splits the ciphertext at byte 512 (its
//! wrapping key is always RSA-4096), refuses an ephemeral key that is not 32 bytes, and uses
//! the same hash for OAEP and MGF1 (Go's `rsa.DecryptOAEP`); OpenBao
//! `builtin/logical/transit/path_import.go`. The ephemeral key is drawn from the system
//! generator for each wrap and zeroized as soon as both halves are made.
//!
//! ```
//! # fn demo(pem: &str) -> Result<(), kms_crypto::CryptoError> {
//! use kms_crypto::transit_wrap::TransitWrappingKey;
//! let wrapping_key = TransitWrappingKey::from_pem(pem)?;
//! let ciphertext = wrapping_key.wrap(&[7u8; 32])?; // the `ciphertext` field of the import
//! # let _ = ciphertext; Ok(()) }
//! ```

use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

use crate::error::CryptoError;

/// The `hash_function` an import request must name for ciphertexts made here.
pub const HASH_FUNCTION: &str = "SHA256";
/// The size of Transit's wrapping key, in bits (Transit splits the ciphertext at its size).
pub const WRAPPING_KEY_BITS: usize = 4096;
/// The length of the material this module wraps (an `aes256-gcm96` Transit key).
pub const MATERIAL_LEN: usize = 32;
/// The length of the AES-KWP half for [`MATERIAL_LEN`] bytes of material: 32 bytes padded to
/// whole 8-byte blocks, plus the 8-byte integrity block.
pub const KWP_LEN: usize = MATERIAL_LEN + 8;

/// Transit's public wrapping key, ready to wrap material for an import.
pub struct TransitWrappingKey {
    key: OaepPublicEncryptingKey,
}

impl std::fmt::Debug for TransitWrappingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitWrappingKey").field("bits", &self.key.key_size_bits()).finish()
    }
}

impl TransitWrappingKey {
    /// Reads the `public_key` field of `GET transit/wrapping_key`: a PEM `PUBLIC KEY` block
    /// (SubjectPublicKeyInfo) of an RSA-4096 key. Anything else is [`CryptoError::Malformed`].
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        let body = pem
            .trim()
            .strip_prefix("-----BEGIN PUBLIC KEY-----")
            .and_then(|rest| rest.strip_suffix("-----END PUBLIC KEY-----"))
            .ok_or(CryptoError::Malformed)?;
        let base64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = B64.decode(base64).map_err(|_| CryptoError::Malformed)?;
        Self::from_der(&der)
    }

    /// Reads a DER SubjectPublicKeyInfo of an RSA-4096 key.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let public = PublicEncryptingKey::from_der(der).map_err(|_| CryptoError::Malformed)?;
        // Transit cuts the ciphertext at 512 bytes: any other size cannot be imported.
        if public.key_size_bits() != WRAPPING_KEY_BITS {
            return Err(CryptoError::Malformed);
        }
        let key = OaepPublicEncryptingKey::new(public).map_err(|_| CryptoError::Malformed)?;
        Ok(Self { key })
    }

    /// The import `ciphertext` (standard base64) of 32 bytes of AES-256 material, under a new
    /// ephemeral key. Refuses material of any other length.
    pub fn wrap(&self, material: &[u8]) -> Result<String, CryptoError> {
        if material.len() != MATERIAL_LEN {
            return Err(CryptoError::invalid("material", "Transit import takes 32 bytes of AES-256 material"));
        }
        let mut ephemeral = Zeroizing::new([0u8; 32]);
        crate::rand::fill(ephemeral.as_mut())?;
        let mut out = vec![0u8; self.key.ciphertext_size() + KWP_LEN];
        let (rsa_half, kwp_half) = out.split_at_mut(self.key.ciphertext_size());
        let sealed = self
            .key
            .encrypt(&OAEP_SHA256_MGF1SHA256, ephemeral.as_ref(), rsa_half, None)
            .map_err(|_| CryptoError::Malformed)?
            .len();
        if sealed != rsa_half.len() {
            return Err(CryptoError::Malformed);
        }
        kwp_wrap(&ephemeral, material, kwp_half)?;
        Ok(B64.encode(&out))
    }
}

/// AES-KWP (RFC 5649) of `material` under the 32-byte `kek`, into `out` (exactly
/// `material.len()` rounded up to 8, plus 8).
fn kwp_wrap(kek: &[u8; 32], material: &[u8], out: &mut [u8]) -> Result<(), CryptoError> {
    let kek = AesKek::new(&AES_256, kek).map_err(|_| CryptoError::invalid("kek", "AES-256 key"))?;
    let wrapped =
        kek.wrap_with_padding(material, out).map_err(|_| CryptoError::invalid("material", "cannot be wrapped"))?;
    if wrapped.len() != out.len() {
        return Err(CryptoError::invalid("material", "cannot be wrapped"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey};

    use super::*;
    use crate::vectors::hex;

    /// AES-KWP with a 256-bit KEK. RFC 5649's own vectors use AES-192, which aws-lc-rs does
    /// not offer; this vector comes from an independent implementation (Python `cryptography`
    /// 50.0.2 on OpenSSL, `aes_key_wrap_with_padding`), checked in the same run against both
    /// RFC 5649 section 6 vectors (20 and 7 bytes under `5840df6e…c176a8`).
    #[test]
    fn kwp_known_answer() {
        let kek: [u8; 32] = std::array::from_fn(|i| i as u8);
        let material: Vec<u8> = (0x40..0x60).collect();
        let mut out = [0u8; KWP_LEN];
        kwp_wrap(&kek, &material, &mut out).unwrap();
        assert_eq!(
            out.to_vec(),
            hex("6d10efa7ee3023460945c8a9886e7101353d66337100c5ff2bcb08bf790e9e202eaa28c31d721d87")
        );
    }

    fn rsa_4096() -> (OaepPrivateDecryptingKey, TransitWrappingKey) {
        let private = PrivateDecryptingKey::generate(KeySize::Rsa4096).unwrap();
        let der = private.public_key().as_der().unwrap();
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            B64.encode(der.as_ref())
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect::<Vec<_>>()
                .join("\n")
        );
        (OaepPrivateDecryptingKey::new(private).unwrap(), TransitWrappingKey::from_pem(&pem).unwrap())
    }

    /// Opens a ciphertext the way Transit does: split at 512, OAEP-SHA256, KWP-unwrap.
    fn unwrap_like_transit(private: &OaepPrivateDecryptingKey, ciphertext: &str) -> Result<Vec<u8>, ()> {
        let bytes = B64.decode(ciphertext).map_err(|_| ())?;
        if bytes.len() <= 512 {
            return Err(());
        }
        let (rsa_half, kwp_half) = bytes.split_at(512);
        let mut ephemeral = [0u8; 512];
        let ephemeral = private.decrypt(&OAEP_SHA256_MGF1SHA256, rsa_half, &mut ephemeral, None).map_err(|_| ())?;
        if ephemeral.len() != 32 {
            return Err(());
        }
        let kek = AesKek::new(&AES_256, ephemeral).map_err(|_| ())?;
        let mut out = vec![0u8; kwp_half.len()];
        Ok(kek.unwrap_with_padding(kwp_half, &mut out).map_err(|_| ())?.to_vec())
    }

    #[test]
    fn wraps_what_transit_unwraps_with_a_fresh_ephemeral_key_each_time() {
        let (private, wrapping_key) = rsa_4096();
        let material = [0x5a; 32];
        let first = wrapping_key.wrap(&material).unwrap();
        let second = wrapping_key.wrap(&material).unwrap();
        assert_eq!(B64.decode(&first).unwrap().len(), 512 + KWP_LEN);
        assert_ne!(first, second, "a new ephemeral key per wrap");
        assert_eq!(unwrap_like_transit(&private, &first).unwrap(), material);
        assert_eq!(unwrap_like_transit(&private, &second).unwrap(), material);
        assert!(format!("{wrapping_key:?}").contains("4096"));

        // Tampering with either half is caught by the unwrap (OAEP or the KWP integrity block).
        let mut bytes = B64.decode(&first).unwrap();
        bytes[512] ^= 1;
        assert_eq!(unwrap_like_transit(&private, &B64.encode(&bytes)), Err(()));
        let mut bytes = B64.decode(&first).unwrap();
        bytes[10] ^= 1;
        assert_eq!(unwrap_like_transit(&private, &B64.encode(&bytes)), Err(()));
    }

    #[test]
    fn refuses_material_that_is_not_32_bytes() {
        let (_, wrapping_key) = rsa_4096();
        for len in [0, 16, 31, 33, 64] {
            assert_eq!(
                wrapping_key.wrap(&vec![1; len]).unwrap_err(),
                CryptoError::invalid("material", "Transit import takes 32 bytes of AES-256 material")
            );
        }
    }

    #[test]
    fn refuses_keys_that_are_not_rsa_4096_spki_pem() {
        let small = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let der = small.public_key().as_der().unwrap();
        assert_eq!(TransitWrappingKey::from_der(der.as_ref()).unwrap_err(), CryptoError::Malformed);
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----", B64.encode(der.as_ref()));
        assert_eq!(TransitWrappingKey::from_pem(&pem).unwrap_err(), CryptoError::Malformed);
        for bad in [
            "",
            "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----",
            "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----",
            "-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
        ] {
            assert_eq!(TransitWrappingKey::from_pem(bad).unwrap_err(), CryptoError::Malformed, "{bad:?}");
        }
    }
}
