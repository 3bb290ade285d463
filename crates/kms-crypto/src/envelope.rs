//! Envelopes: a short plaintext (a data key, or any plaintext of at most 4096 bytes) sealed
//! under a [`KeyEncryptionKey`] and bound to the master key id, its version and the
//! encryption context.
//!
//! Version 2 layout, written (`docs/formats.md`, "Envelope"):
//!
//! ```text
//! offset  len  field
//! 0       1    format version, 0x02
//! 1       1    algorithm id, 0x01 AES-256-GCM (the key-encryption key's algorithm)
//! 2       32   salt (random)
//! 34      n    ciphertext (n = plaintext length, 0..=4096)
//! 34+n    16   tag
//! ```
//!
//! Each envelope is sealed under its own key, HKDF-SHA256(salt, KEK, info = `"kms-envelope-v2"`
//! ‖ algorithm id), with the all-zero nonce: the derived key seals exactly one message, so the
//! 2³² bound on random 96-bit nonces under one key no longer limits how many envelopes one
//! master key version may seal. Associated data = the 34 header bytes ‖ `"kms-envelope-v2"` ‖
//! u64 BE len(master key id) ‖ master key id ‖ u32 BE master key version ‖
//! [`canonical_context`](crate::context::canonical_context).
//!
//! Version 1 envelopes (`0x01`, algorithm, 12-byte random nonce, ciphertext, tag; sealed
//! directly under the KEK, domain `"kms-envelope-v1"`) stay readable. An envelope whose
//! algorithm is not the key-encryption key's (AES-256-GCM) is refused in either version.
//! Opening with another key id, version or context, or after changing any byte, fails with an
//! opaque [`CryptoError`].
//!
//! Two ways in, writing the same bytes: the free functions ([`seal`], [`wrap_data_key`], ...)
//! take a [`KeyEncryptionKey`]; a [`PreparedKek`], built once per key-encryption key, keeps
//! the version-1 cipher set up and adds [`PreparedKek::generate_and_wrap_data_key`], which
//! draws the data key and the salt in one call to the random number generator. Callers that
//! wrap many keys under one KEK (a backend's data path) hold a `PreparedKek`.
//!
//! ```
//! use kms_crypto::envelope::{self, Binding, PreparedKek};
//! use kms_crypto::keys::{KeyEncryptionKey, PlaintextDataKey};
//! use kms_types::types::{EncryptionContext, KeySpec};
//!
//! let kek = KeyEncryptionKey::generate()?;
//! let mut context = EncryptionContext::new();
//! context.insert("bucket".into(), "photos".into());
//! let binding = Binding { master_key_id: "master-1", master_key_version: 3, context: &context };
//!
//! let data_key = PlaintextDataKey::generate(KeySpec::Aes256)?;
//! let wrapped = envelope::wrap_data_key(&kek, &data_key, &binding)?;
//! assert_eq!(wrapped.as_bytes()[0], envelope::ENVELOPE_FORMAT_VERSION);
//! let unwrapped = envelope::unwrap_data_key(&kek, &wrapped, &binding)?;
//! assert_eq!(unwrapped.expose_secret(), data_key.expose_secret());
//!
//! let other = Binding { master_key_version: 4, ..binding };
//! let refused = envelope::unwrap_data_key(&kek, &wrapped, &other).err();
//! assert_eq!(refused, Some(kms_crypto::CryptoError::Unauthenticated));
//!
//! // Prepared once, then one random draw and one seal per data key.
//! let prepared = PreparedKek::new(kek);
//! let (fresh, wrapped) = prepared.generate_and_wrap_data_key(KeySpec::Aes256, &binding)?;
//! let unwrapped = prepared.unwrap_data_key(&wrapped, &binding)?;
//! assert_eq!(unwrapped.expose_secret(), fresh.expose_secret());
//! # Ok::<(), kms_crypto::CryptoError>(())
//! ```

use std::fmt;

use kms_types::secret::REDACTED;
use kms_types::types::{EncryptionContext, KeySpec};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use zeroize::{Zeroize, Zeroizing};

use crate::aead::{Algorithm, NONCE_LEN, TAG_LEN};
use crate::context::{canonical_context_len, put_bytes, put_canonical_context};
use crate::error::CryptoError;
use crate::keys::{KeyEncryptionKey, PlaintextDataKey, WrappedDataKey};
use crate::rand::fill as fill_random;

/// Version byte of the envelope format written.
pub const ENVELOPE_FORMAT_VERSION: u8 = 2;
/// Version byte of the first envelope format, still read.
pub const ENVELOPE_FORMAT_V1: u8 = 1;
/// Largest plaintext an envelope holds, in bytes (AWS KMS `Encrypt`'s limit).
pub const MAX_PLAINTEXT_LEN: usize = 4096;
/// Length of the random salt a version-2 envelope carries.
pub const SALT_LEN: usize = 32;
/// Length of the version-2 envelope header (version, algorithm, salt).
pub const HEADER_LEN: usize = 2 + SALT_LEN;
/// Bytes a version-2 envelope is longer than its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Length of the version-1 envelope header (version, algorithm, nonce).
pub const V1_HEADER_LEN: usize = 2 + NONCE_LEN;

const DOMAIN_V1: &[u8] = b"kms-envelope-v1";
const DOMAIN_V2: &[u8] = b"kms-envelope-v2";
/// The nonce of every version-2 envelope: its derived key seals this one message only.
const V2_NONCE: [u8; NONCE_LEN] = [0; NONCE_LEN];

/// The longest data key ([`KeySpec::Aes256`]), for the buffer of one random draw.
const MAX_DATA_KEY_LEN: usize = 32;

/// The envelope format versions this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    V1,
    V2,
}

impl Format {
    fn header_len(self) -> usize {
        match self {
            Self::V1 => V1_HEADER_LEN,
            Self::V2 => HEADER_LEN,
        }
    }

    fn domain(self) -> &'static [u8] {
        match self {
            Self::V1 => DOMAIN_V1,
            Self::V2 => DOMAIN_V2,
        }
    }
}

/// What an envelope is bound to: the master key (id and version) that wraps it and the
/// encryption context. All three must be given again, identical, to open it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<'a> {
    /// The master key's id.
    pub master_key_id: &'a str,
    /// The master key's version whose key-encryption key seals the envelope.
    pub master_key_version: u32,
    /// The encryption context (may be empty).
    pub context: &'a EncryptionContext,
}

impl Binding<'_> {
    fn aad(&self, header: &[u8], domain: &[u8]) -> Vec<u8> {
        let len = header.len() + domain.len() + 8 + self.master_key_id.len() + 4 + canonical_context_len(self.context);
        let mut aad = Vec::with_capacity(len);
        aad.extend_from_slice(header);
        aad.extend_from_slice(domain);
        put_bytes(&mut aad, self.master_key_id.as_bytes());
        aad.extend_from_slice(&self.master_key_version.to_be_bytes());
        put_canonical_context(&mut aad, self.context);
        debug_assert_eq!(aad.len(), len);
        aad
    }
}

/// A [`KeyEncryptionKey`] prepared for sealing and opening many envelopes: it keeps the
/// AES-256-GCM cipher of version-1 envelopes set up (the AES key schedule and the GHASH
/// table); version-2 envelopes derive their own key per envelope.
///
/// Everything the free functions of this module do, it does with the same bytes in and out;
/// [`generate_and_wrap_data_key`](Self::generate_and_wrap_data_key) makes a data key and its
/// envelope with one random draw and one AEAD seal.
///
/// Not `Clone`; `Debug` is redacted. It owns the [`KeyEncryptionKey`] (zeroized on drop).
/// **Limit:** expanded cipher state lives inside ring's `LessSafeKey`, which does not zeroize
/// itself and which this crate cannot wipe without `unsafe`; the AES-256 key schedule begins
/// with the key itself, so until that memory is reused a copy of the key (or of a derived
/// per-envelope key) stays in freed heap or on the stack.
pub struct PreparedKek {
    kek: KeyEncryptionKey,
    v1: LessSafeKey,
}

impl PreparedKek {
    /// Prepares `kek`: sets up AES-256-GCM under it, once.
    pub fn new(kek: KeyEncryptionKey) -> Self {
        let v1 =
            KeyEncryptionKey::ALGORITHM.less_safe_key(kek.expose_secret()).expect("a key-encryption key is 32 bytes");
        Self { kek, v1 }
    }

    /// The key-encryption key this was prepared from (to persist it sealed, for example).
    pub fn key_encryption_key(&self) -> &KeyEncryptionKey {
        &self.kek
    }

    /// A prepared copy of `kek`, for the free functions (which borrow their key).
    fn copy_of(kek: &KeyEncryptionKey) -> Self {
        Self::new(KeyEncryptionKey::from_bytes(kek.expose_secret()).expect("a key-encryption key is 32 bytes long"))
    }

    /// The key of the version-2 envelope with this `salt`: HKDF-SHA256 (RFC 5869) with `salt`
    /// as salt, the KEK as input keying material and `"kms-envelope-v2"` ‖ algorithm id as info.
    fn derive(&self, salt: &[u8]) -> Result<LessSafeKey, CryptoError> {
        let algorithm = KeyEncryptionKey::ALGORITHM;
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(self.kek.expose_secret());
        let id = [algorithm.id()];
        let info = [DOMAIN_V2, &id];
        let okm = prk
            .expand(&info, algorithm.ring())
            .map_err(|_| CryptoError::invalid("key", "HKDF cannot produce a key of this length"))?;
        Ok(LessSafeKey::new(UnboundKey::from(okm)))
    }

    /// Seals `plaintext` (at most [`MAX_PLAINTEXT_LEN`] bytes) into a version-2 envelope
    /// bound to `binding`, under a fresh random salt. The same as [`seal`].
    pub fn seal(&self, plaintext: &[u8], binding: &Binding<'_>) -> Result<Vec<u8>, CryptoError> {
        let mut salt = [0u8; SALT_LEN];
        fill_random(&mut salt)?;
        self.seal_with_salt(salt, plaintext, binding)
    }

    /// [`seal`](Self::seal) with the envelope appended to `out` (a caller's reused buffer, or
    /// one that already holds the caller's framing). On failure `out` is as it was.
    pub fn seal_into(&self, plaintext: &[u8], binding: &Binding<'_>, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let mut salt = [0u8; SALT_LEN];
        fill_random(&mut salt)?;
        self.seal_with_salt_into(salt, plaintext, binding, out)
    }

    pub(crate) fn seal_with_salt(
        &self,
        salt: [u8; SALT_LEN],
        plaintext: &[u8],
        binding: &Binding<'_>,
    ) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        self.seal_with_salt_into(salt, plaintext, binding, &mut out)?;
        Ok(out)
    }

    /// Appends the envelope to `out`; on failure `out` is as it was.
    fn seal_with_salt_into(
        &self,
        salt: [u8; SALT_LEN],
        plaintext: &[u8],
        binding: &Binding<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(CryptoError::invalid("plaintext", "an envelope holds at most 4096 bytes"));
        }
        let start = out.len();
        out.reserve(plaintext.len() + OVERHEAD);
        out.push(ENVELOPE_FORMAT_VERSION);
        out.push(KeyEncryptionKey::ALGORITHM.id());
        out.extend_from_slice(&salt);
        let aad = binding.aad(&out[start..], DOMAIN_V2);
        out.extend_from_slice(plaintext);
        let sealed = self.derive(&salt).and_then(|key| {
            let nonce = Nonce::assume_unique_for_key(V2_NONCE);
            Ok(key.seal_in_place_separate_tag(nonce, Aad::from(&aad), &mut out[start + HEADER_LEN..])?)
        });
        match sealed {
            Ok(tag) => {
                out.extend_from_slice(tag.as_ref());
                Ok(())
            }
            Err(e) => {
                // The plaintext was copied in to be sealed in place: wipe it before leaving.
                out[start..].zeroize();
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Opens an envelope (version 2, or version 1) made with this key-encryption key and
    /// `binding`; the plaintext is zeroized on drop. The same as [`open`].
    pub fn open(&self, envelope: &[u8], binding: &Binding<'_>) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut out = Zeroizing::new(Vec::new());
        self.open_into(envelope, binding, &mut out)?;
        Ok(out)
    }

    /// [`open`](Self::open) into a buffer the caller reuses: on success `out` holds exactly
    /// the plaintext. Its capacity is reused; one too small is wiped before it grows (growing
    /// would leave a copy of what it held behind). On any failure `out` is wiped and empty.
    pub fn open_into(
        &self,
        envelope: &[u8],
        binding: &Binding<'_>,
        out: &mut Zeroizing<Vec<u8>>,
    ) -> Result<(), CryptoError> {
        let result = self.open_into_unwiped(envelope, binding, out);
        if result.is_err() {
            out.as_mut_slice().zeroize();
            out.clear();
        }
        result
    }

    fn open_into_unwiped(
        &self,
        envelope: &[u8],
        binding: &Binding<'_>,
        out: &mut Zeroizing<Vec<u8>>,
    ) -> Result<(), CryptoError> {
        let (format, header) = parse_header(envelope)?;
        let aad = Aad::from(binding.aad(header, format.domain()));
        let body = &envelope[header.len()..];
        if out.capacity() < body.len() {
            out.zeroize();
            out.reserve_exact(body.len());
        }
        out.clear();
        out.extend_from_slice(body);
        let len = match format {
            Format::V1 => {
                let nonce = Nonce::try_assume_unique_for_key(&header[2..]).map_err(|_| CryptoError::Malformed)?;
                self.v1.open_in_place(nonce, aad, out.as_mut_slice())?.len()
            }
            Format::V2 => {
                let key = self.derive(&header[2..])?;
                key.open_in_place(Nonce::assume_unique_for_key(V2_NONCE), aad, out.as_mut_slice())?.len()
            }
        };
        out.truncate(len);
        Ok(())
    }

    /// [`generate_and_wrap_data_key`](Self::generate_and_wrap_data_key) with the envelope
    /// appended to `out`: a caller framing the envelope (a blob header written into `out`
    /// first) builds its whole blob in one allocation instead of copying the envelope into
    /// it. On failure `out` is as it was.
    pub fn generate_and_wrap_data_key_into(
        &self,
        spec: KeySpec,
        binding: &Binding<'_>,
        out: &mut Vec<u8>,
    ) -> Result<PlaintextDataKey, CryptoError> {
        let key_len = spec.key_len();
        if key_len > MAX_DATA_KEY_LEN {
            return Err(CryptoError::invalid("key_spec", "not a data key length"));
        }
        let mut random = Zeroizing::new([0u8; MAX_DATA_KEY_LEN + SALT_LEN]);
        let random = &mut random[..key_len + SALT_LEN];
        fill_random(random)?;
        let (key, salt) = random.split_at(key_len);
        let salt: [u8; SALT_LEN] = salt.try_into().expect("SALT_LEN bytes");
        let data_key = PlaintextDataKey::from_bytes(key)?;
        self.seal_with_salt_into(salt, key, binding, out)?;
        Ok(data_key)
    }

    /// Wraps `data_key`, bound to `binding`. The same as [`wrap_data_key`].
    pub fn wrap_data_key(
        &self,
        data_key: &PlaintextDataKey,
        binding: &Binding<'_>,
    ) -> Result<WrappedDataKey, CryptoError> {
        self.seal(data_key.expose_secret(), binding).map(WrappedDataKey::from)
    }

    /// Unwraps a data key wrapped with this key-encryption key and `binding`. The same as
    /// [`unwrap_data_key`].
    pub fn unwrap_data_key(
        &self,
        wrapped: &WrappedDataKey,
        binding: &Binding<'_>,
    ) -> Result<PlaintextDataKey, CryptoError> {
        let plaintext = self.open(wrapped.as_bytes(), binding)?;
        PlaintextDataKey::from_bytes(&plaintext).map_err(|_| CryptoError::Malformed)
    }

    /// A fresh data key of `spec` and its envelope bound to `binding`: one draw from the
    /// system random number generator (the key and the salt together) and one AEAD seal.
    /// The envelope is the one [`wrap_data_key`] writes for that key and salt.
    pub fn generate_and_wrap_data_key(
        &self,
        spec: KeySpec,
        binding: &Binding<'_>,
    ) -> Result<(PlaintextDataKey, WrappedDataKey), CryptoError> {
        let mut wrapped = Vec::with_capacity(spec.key_len() + OVERHEAD);
        let data_key = self.generate_and_wrap_data_key_into(spec, binding, &mut wrapped)?;
        Ok((data_key, WrappedDataKey::from(wrapped)))
    }
}

impl fmt::Debug for PreparedKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PreparedKek").field(&REDACTED).finish()
    }
}

/// Seals `plaintext` (at most [`MAX_PLAINTEXT_LEN`] bytes) under `kek` into a version-2
/// envelope, bound to `binding`.
pub fn seal(kek: &KeyEncryptionKey, plaintext: &[u8], binding: &Binding<'_>) -> Result<Vec<u8>, CryptoError> {
    PreparedKek::copy_of(kek).seal(plaintext, binding)
}

/// Opens an envelope made by [`seal`] (or a version-1 envelope) with the same `kek` and
/// `binding`; the plaintext is zeroized on drop.
pub fn open(kek: &KeyEncryptionKey, envelope: &[u8], binding: &Binding<'_>) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    PreparedKek::copy_of(kek).open(envelope, binding)
}

/// Checks an envelope's framing (version, length, algorithm) without any key. Returns the
/// format and the header bytes. An algorithm other than the key-encryption key's is refused
/// here: a key is used with one algorithm only.
fn parse_header(envelope: &[u8]) -> Result<(Format, &[u8]), CryptoError> {
    let format = match envelope.first() {
        Some(&ENVELOPE_FORMAT_VERSION) => Format::V2,
        Some(&ENVELOPE_FORMAT_V1) => Format::V1,
        _ => return Err(CryptoError::Malformed),
    };
    let header_len = format.header_len();
    if envelope.len() < header_len + TAG_LEN || envelope.len() > header_len + TAG_LEN + MAX_PLAINTEXT_LEN {
        return Err(CryptoError::Malformed);
    }
    if Algorithm::from_id(envelope[1]) != Some(KeyEncryptionKey::ALGORITHM) {
        return Err(CryptoError::Malformed);
    }
    Ok((format, &envelope[..header_len]))
}

/// Checks that `bytes` is framed as an envelope this crate reads (version 1 or 2, right
/// length range, the key-encryption key's algorithm). Says nothing about authenticity.
pub fn is_envelope(bytes: &[u8]) -> bool {
    parse_header(bytes).is_ok()
}

/// Wraps `data_key` under `kek`, bound to `binding`: an envelope whose plaintext is the key.
pub fn wrap_data_key(
    kek: &KeyEncryptionKey,
    data_key: &PlaintextDataKey,
    binding: &Binding<'_>,
) -> Result<WrappedDataKey, CryptoError> {
    PreparedKek::copy_of(kek).wrap_data_key(data_key, binding)
}

/// Unwraps a data key wrapped by [`wrap_data_key`] with the same `kek` and `binding`.
///
/// An envelope that authenticates but does not hold a 16- or 32-byte key is
/// [`CryptoError::Malformed`].
pub fn unwrap_data_key(
    kek: &KeyEncryptionKey,
    wrapped: &WrappedDataKey,
    binding: &Binding<'_>,
) -> Result<PlaintextDataKey, CryptoError> {
    PreparedKek::copy_of(kek).unwrap_data_key(wrapped, binding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::hex;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn to_hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn kat_kek() -> KeyEncryptionKey {
        KeyEncryptionKey::from_bytes(&(0u8..32).collect::<Vec<_>>()).unwrap()
    }

    const KAT_SALT: [u8; SALT_LEN] = [
        0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f, 0x50, 0x51,
        0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x5b, 0x5c, 0x5d, 0x5e, 0x5f,
    ];

    /// The reusing variants: `seal_into` appends after a caller's framing, `open_into` reuses a
    /// buffer holding an earlier plaintext and leaves it empty when the envelope does not open.
    #[test]
    fn into_variants_append_and_reuse_and_fail_empty() {
        let prepared = PreparedKek::new(kat_kek());
        let context = ctx(&[("bucket", "photos")]);
        let binding = Binding { master_key_id: "master-1", master_key_version: 7, context: &context };
        let mut framed = b"FRAME".to_vec();
        prepared.seal_into(b"first secret", &binding, &mut framed).unwrap();
        assert_eq!(&framed[..5], b"FRAME");
        assert_eq!(framed.len(), 5 + b"first secret".len() + OVERHEAD);
        let envelope = &framed[5..];

        let mut out = Zeroizing::new(b"an earlier, longer plaintext".to_vec());
        prepared.open_into(envelope, &binding, &mut out).unwrap();
        assert_eq!(&out[..], b"first secret");
        assert_eq!(&*prepared.open(envelope, &binding).unwrap(), b"first secret");

        let mut tampered = envelope.to_vec();
        tampered[HEADER_LEN] ^= 1;
        let other = Binding { master_key_version: 8, ..binding };
        let cases: [(&[u8], &Binding<'_>, CryptoError); 3] = [
            (&tampered, &binding, CryptoError::Unauthenticated),
            (envelope, &other, CryptoError::Unauthenticated),
            (&envelope[..HEADER_LEN + TAG_LEN - 1], &binding, CryptoError::Malformed),
        ];
        for (bad, binding, expected) in cases {
            let mut out = Zeroizing::new(b"first secret".to_vec());
            assert_eq!(prepared.open_into(bad, binding, &mut out), Err(expected));
            assert!(out.is_empty(), "{expected:?}: {} bytes left", out.len());
        }
    }

    /// Version 2: fixed KEK 00..1f, salt 40..5f, key id "master-1" v7, context {bucket:
    /// photos, object: cat.jpg}, plaintext 10..2f; and an empty plaintext under salt ff × 32,
    /// key id "k" v1, empty context. Each envelope has its own HKDF-derived key.
    #[test]
    fn v2_envelopes_seal_under_a_per_envelope_hkdf_key_known_answer() {
        let context = ctx(&[("object", "cat.jpg"), ("bucket", "photos")]);
        let binding = Binding { master_key_id: "master-1", master_key_version: 7, context: &context };
        let plaintext: Vec<u8> = (0x10u8..0x30).collect();
        let sealed = PreparedKek::new(kat_kek()).seal_with_salt(KAT_SALT, &plaintext, &binding).unwrap();
        assert_eq!(to_hex(&sealed), V2_KAT);
        assert_eq!(&*open(&kat_kek(), &hex(V2_KAT), &binding).unwrap(), &plaintext);

        let empty = EncryptionContext::new();
        let binding = Binding { master_key_id: "k", master_key_version: 1, context: &empty };
        let sealed = PreparedKek::new(kat_kek()).seal_with_salt([0xff; SALT_LEN], b"", &binding).unwrap();
        assert_eq!(to_hex(&sealed), V2_KAT_EMPTY);
        assert!(open(&kat_kek(), &sealed, &binding).unwrap().is_empty());
    }

    /// New envelopes are version 2 with a fresh salt each; version 1 envelopes stay readable.
    #[test]
    fn new_envelopes_are_v2_with_fresh_salts_and_v1_stays_readable() {
        let context = ctx(&[("object", "cat.jpg"), ("bucket", "photos")]);
        let binding = Binding { master_key_id: "master-1", master_key_version: 7, context: &context };
        let a = seal(&kat_kek(), b"same", &binding).unwrap();
        let b = seal(&kat_kek(), b"same", &binding).unwrap();
        assert_eq!((a[0], a[1], a.len()), (ENVELOPE_FORMAT_VERSION, 1, 4 + OVERHEAD));
        assert_ne!(a[2..HEADER_LEN], b[2..HEADER_LEN], "fresh salts");
        assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..], "different keys, different ciphertexts");

        let plaintext: Vec<u8> = (0x10u8..0x30).collect();
        assert_eq!(&*open(&kat_kek(), &hex(V1_AES_KAT), &binding).unwrap(), &plaintext);
        assert_eq!(&*PreparedKek::new(kat_kek()).open(&hex(V1_AES_KAT), &binding).unwrap(), &plaintext);
        let other = Binding { master_key_version: 8, ..binding };
        assert_eq!(open(&kat_kek(), &hex(V1_AES_KAT), &other).unwrap_err(), CryptoError::Unauthenticated);
    }

    /// A ChaCha20-Poly1305 envelope, authentic under the KEK's bytes, is refused: the
    /// key-encryption key is an AES-256-GCM key and is used with no other algorithm.
    #[test]
    fn an_envelope_whose_algorithm_is_not_the_keks_is_refused() {
        let context = ctx(&[("object", "cat.jpg"), ("bucket", "photos")]);
        let binding = Binding { master_key_id: "master-1", master_key_version: 7, context: &context };
        assert!(!is_envelope(&hex(V1_CHACHA_KAT)));
        assert_eq!(open(&kat_kek(), &hex(V1_CHACHA_KAT), &binding).unwrap_err(), CryptoError::Malformed);
        let mut v2 = hex(V2_KAT);
        v2[1] = Algorithm::ChaCha20Poly1305.id();
        assert_eq!(open(&kat_kek(), &v2, &binding).unwrap_err(), CryptoError::Malformed);
    }

    /// The one-draw path writes exactly the envelope `wrap_data_key` writes for the same key
    /// and salt, and each path opens what the other wrote.
    #[test]
    fn generate_and_wrap_interoperates_with_the_free_functions() {
        let kek = KeyEncryptionKey::generate().unwrap();
        let prepared = PreparedKek::copy_of(&kek);
        let context = ctx(&[("bucket", "photos"), ("object", "cat.jpg")]);
        let binding = Binding { master_key_id: "master-1", master_key_version: 7, context: &context };
        for spec in [KeySpec::Aes256, KeySpec::Aes128] {
            let (data_key, wrapped) = prepared.generate_and_wrap_data_key(spec, &binding).unwrap();
            assert_eq!(data_key.key_spec(), spec);
            assert_eq!(wrapped.as_bytes().len(), spec.key_len() + OVERHEAD);
            let salt: [u8; SALT_LEN] = wrapped.as_bytes()[2..HEADER_LEN].try_into().unwrap();
            let again = prepared.seal_with_salt(salt, data_key.expose_secret(), &binding);
            assert_eq!(again.unwrap(), wrapped.as_bytes());
            assert_eq!(unwrap_data_key(&kek, &wrapped, &binding).unwrap().expose_secret(), data_key.expose_secret());

            let by_free = wrap_data_key(&kek, &data_key, &binding).unwrap();
            assert_eq!(prepared.unwrap_data_key(&by_free, &binding).unwrap().expose_secret(), data_key.expose_secret());
            let other = Binding { master_key_version: 8, ..binding };
            assert_eq!(prepared.unwrap_data_key(&wrapped, &other).unwrap_err(), CryptoError::Unauthenticated);
            let stranger = PreparedKek::new(KeyEncryptionKey::generate().unwrap());
            assert_eq!(stranger.unwrap_data_key(&wrapped, &binding).unwrap_err(), CryptoError::Unauthenticated);
        }
        let (a, wa) = prepared.generate_and_wrap_data_key(KeySpec::Aes256, &binding).unwrap();
        let (b, wb) = prepared.generate_and_wrap_data_key(KeySpec::Aes256, &binding).unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_ne!(wa.as_bytes()[2..HEADER_LEN], wb.as_bytes()[2..HEADER_LEN], "fresh salts");
        // The key and the salt come from one draw, but not the same bytes of it.
        assert!(!wa.as_bytes()[2..HEADER_LEN].windows(a.expose_secret().len()).any(|w| w == a.expose_secret()));
    }

    #[test]
    fn prepared_seal_and_open_match_the_free_functions() {
        let kek = KeyEncryptionKey::generate().unwrap();
        let prepared = PreparedKek::copy_of(&kek);
        let context = ctx(&[("tenant", "a")]);
        let binding = Binding { master_key_id: "m", master_key_version: 2, context: &context };
        for len in [0usize, 1, 32, MAX_PLAINTEXT_LEN] {
            let plaintext = vec![0x5Au8; len];
            let by_prepared = prepared.seal(&plaintext, &binding).unwrap();
            let by_free = seal(&kek, &plaintext, &binding).unwrap();
            assert_eq!(&*open(&kek, &by_prepared, &binding).unwrap(), &plaintext);
            assert_eq!(&*prepared.open(&by_free, &binding).unwrap(), &plaintext);
        }
        assert!(matches!(
            prepared.seal(&[0; MAX_PLAINTEXT_LEN + 1], &binding),
            Err(CryptoError::InvalidArgument { field: "plaintext", .. })
        ));
        assert_eq!(prepared.open(b"short", &binding).unwrap_err(), CryptoError::Malformed);
        let mut sealed = prepared.seal(b"record", &binding).unwrap();
        sealed[HEADER_LEN] ^= 1;
        assert_eq!(prepared.open(&sealed, &binding).unwrap_err(), CryptoError::Unauthenticated);
        assert_eq!(format!("{prepared:?}"), format!("PreparedKek({REDACTED:?})"));
    }

    // The first two cases of `docs/vectors/envelope-v2.json` and of
    // `docs/vectors/envelope-v1.json`, which `docs/vectors/check.py` re-derives independently
    // (Python `cryptography`, from docs/formats.md alone).
    const V2_KAT: &str = "0201404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f8de9ed64661195d5ad6461419a8e90bbbf5aceb4f11ccfa28a7ba7c24b1c18c756cb076521cb071e9a683a52f181e173";
    const V2_KAT_EMPTY: &str =
        "0201ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff3b687e0143bc23057ed15a4fc800eedf";
    const V1_AES_KAT: &str = "0101a0a1a2a3a4a5a6a7a8a9aaabf6096e3e51de14a87a7c9dc81b67dec1508d7b33b692644bb4270cad53865b2ed537b42d93bb2c65b401913672641f6f";
    const V1_CHACHA_KAT: &str = "0102a0a1a2a3a4a5a6a7a8a9aaab1cba6a4c59f3d4bab816e90fe0e7e3e4bd7ff19c674f46849cf1f19a5d4fed23aa648c363009653daf71ae36a0244c18";

    #[test]
    fn binding_and_bytes_are_all_checked() {
        let kek = KeyEncryptionKey::generate().unwrap();
        let context = ctx(&[("bucket", "photos"), ("object", "cat.jpg")]);
        let binding = Binding { master_key_id: "master-1", master_key_version: 7, context: &context };
        let sealed = seal(&kek, b"thirty-two bytes of data key!!!!", &binding).unwrap();
        assert_eq!(sealed.len(), 32 + OVERHEAD);
        assert!(is_envelope(&sealed));
        assert_eq!(&*open(&kek, &sealed, &binding).unwrap(), b"thirty-two bytes of data key!!!!");

        let other_ctx = ctx(&[("bucket", "photos"), ("object", "dog.jpg")]);
        let empty = EncryptionContext::new();
        let wrong = [
            Binding { master_key_id: "master-2", ..binding },
            Binding { master_key_id: "master-", ..binding },
            Binding { master_key_version: 8, ..binding },
            Binding { master_key_version: 0, ..binding },
            Binding { context: &other_ctx, ..binding },
            Binding { context: &empty, ..binding },
        ];
        for b in &wrong {
            assert_eq!(open(&kek, &sealed, b).unwrap_err(), CryptoError::Unauthenticated, "{b:?}");
        }
        let other_kek = KeyEncryptionKey::generate().unwrap();
        assert_eq!(open(&other_kek, &sealed, &binding).unwrap_err(), CryptoError::Unauthenticated);

        for i in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let r = open(&kek, &bad, &binding);
            assert!(matches!(r, Err(CryptoError::Malformed | CryptoError::Unauthenticated)), "bit {i}: {r:?}");
        }
        for len in 0..sealed.len() {
            // Shorter than header + tag is refused by the framing check; longer ones fail the tag.
            let expected = if len < OVERHEAD { CryptoError::Malformed } else { CryptoError::Unauthenticated };
            assert_eq!(open(&kek, &sealed[..len], &binding).unwrap_err(), expected, "truncated to {len}");
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert_eq!(open(&kek, &longer, &binding).unwrap_err(), CryptoError::Unauthenticated);
        // Rewriting the version byte to 1 (a downgrade attempt) is caught by the AAD.
        let mut v1 = sealed.clone();
        v1[0] = ENVELOPE_FORMAT_V1;
        assert_eq!(open(&kek, &v1, &binding).unwrap_err(), CryptoError::Unauthenticated);
    }

    #[test]
    fn malformed_framing_is_refused_before_decrypting() {
        let kek = kat_kek();
        let context = EncryptionContext::new();
        let binding = Binding { master_key_id: "k", master_key_version: 1, context: &context };
        let mut good = seal(&kek, b"", &binding).unwrap();
        assert_eq!(good.len(), OVERHEAD);
        assert!(open(&kek, &good, &binding).unwrap().is_empty());
        good[0] = 3;
        assert_eq!(open(&kek, &good, &binding).unwrap_err(), CryptoError::Malformed);
        good[0] = ENVELOPE_FORMAT_VERSION;
        good[1] = 0;
        assert_eq!(open(&kek, &good, &binding).unwrap_err(), CryptoError::Malformed);
        assert_eq!(
            open(&kek, &vec![1; OVERHEAD + MAX_PLAINTEXT_LEN + 1], &binding).unwrap_err(),
            CryptoError::Malformed
        );
        assert!(!is_envelope(b"vault:v1:abc"));
    }

    #[test]
    fn plaintext_limit() {
        let kek = kat_kek();
        let context = EncryptionContext::new();
        let binding = Binding { master_key_id: "k", master_key_version: 1, context: &context };
        let max = vec![7u8; MAX_PLAINTEXT_LEN];
        let sealed = seal(&kek, &max, &binding).unwrap();
        assert_eq!(&*open(&kek, &sealed, &binding).unwrap(), &max);
        assert!(matches!(
            seal(&kek, &[0; MAX_PLAINTEXT_LEN + 1], &binding),
            Err(CryptoError::InvalidArgument { field: "plaintext", .. })
        ));
    }

    #[test]
    fn data_keys_wrap_and_unwrap() {
        let kek = KeyEncryptionKey::generate().unwrap();
        let context = ctx(&[("tenant", "a")]);
        let binding = Binding { master_key_id: "m", master_key_version: 2, context: &context };
        for spec in [kms_types::types::KeySpec::Aes256, kms_types::types::KeySpec::Aes128] {
            let dk = PlaintextDataKey::generate(spec).unwrap();
            let wrapped = wrap_data_key(&kek, &dk, &binding).unwrap();
            assert_ne!(wrapped.as_bytes()[HEADER_LEN..HEADER_LEN + dk.expose_secret().len()], *dk.expose_secret());
            let back = unwrap_data_key(&kek, &wrapped, &binding).unwrap();
            assert_eq!(back.expose_secret(), dk.expose_secret());
            assert_eq!(back.key_spec(), spec);
        }
        // An authentic envelope that does not hold a key is not a data key.
        let not_a_key = WrappedDataKey::from(seal(&kek, b"hello", &binding).unwrap());
        assert_eq!(unwrap_data_key(&kek, &not_a_key, &binding).unwrap_err(), CryptoError::Malformed);
    }
}
