//! Envelopes: a short plaintext (a data key, or any plaintext of at most 4096 bytes) sealed
//! under a [`KeyEncryptionKey`] and bound to the master key id, its version and the
//! encryption context.
//!
//! Version 1 layout (`docs/formats.md`, "Envelope"):
//!
//! ```text
//! offset  len  field
//! 0       1    format version, 0x01
//! 1       1    algorithm id (0x01 AES-256-GCM, 0x02 ChaCha20-Poly1305)
//! 2       12   nonce (random)
//! 14      n    ciphertext (n = plaintext length, 0..=4096)
//! 14+n    16   tag
//! ```
//!
//! Associated data = the 14 header bytes ‖ `"kms-envelope-v1"` ‖ u64 BE len(master key id) ‖
//! master key id ‖ u32 BE master key version ‖ [`canonical_context`](crate::context::canonical_context). Opening with another key
//! id, version or context, or after changing any byte, fails with an opaque [`CryptoError`].
//!
//! Two ways in, writing the same bytes: the free functions ([`seal`], [`wrap_data_key`], ...)
//! take a [`KeyEncryptionKey`] and set up the cipher on every call; a [`PreparedKek`], built
//! once per key-encryption key, keeps the cipher set up and adds
//! [`PreparedKek::generate_and_wrap_data_key`], which draws the data key and the nonce in one
//! call to the random number generator. Callers that wrap many keys under one KEK (a backend's
//! data path) hold a `PreparedKek`.
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
//! let unwrapped = envelope::unwrap_data_key(&kek, &wrapped, &binding)?;
//! assert_eq!(unwrapped.expose_secret(), data_key.expose_secret());
//!
//! let other = Binding { master_key_version: 4, ..binding };
//! assert!(envelope::unwrap_data_key(&kek, &wrapped, &other).is_err());
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
use ring::aead::{Aad, LessSafeKey, Nonce};
use zeroize::Zeroizing;

use crate::aead::{Algorithm, NONCE_LEN, TAG_LEN, random_nonce};
use crate::context::{canonical_context_len, put_bytes, put_canonical_context};
use crate::error::CryptoError;
use crate::keys::{KeyEncryptionKey, PlaintextDataKey, WrappedDataKey, fill_random};

/// Version byte of the envelope format.
pub const ENVELOPE_FORMAT_VERSION: u8 = 1;
/// Largest plaintext an envelope holds, in bytes (AWS KMS `Encrypt`'s limit).
pub const MAX_PLAINTEXT_LEN: usize = 4096;
/// Length of the envelope header (version, algorithm, nonce).
pub const HEADER_LEN: usize = 2 + NONCE_LEN;
/// Bytes an envelope is longer than its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

const DOMAIN: &[u8] = b"kms-envelope-v1";

/// The longest data key ([`KeySpec::Aes256`]), for the buffer of one random draw.
const MAX_DATA_KEY_LEN: usize = 32;

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
    fn aad(&self, header: &[u8]) -> Vec<u8> {
        let len = header.len() + DOMAIN.len() + 8 + self.master_key_id.len() + 4 + canonical_context_len(self.context);
        let mut aad = Vec::with_capacity(len);
        aad.extend_from_slice(header);
        aad.extend_from_slice(DOMAIN);
        put_bytes(&mut aad, self.master_key_id.as_bytes());
        aad.extend_from_slice(&self.master_key_version.to_be_bytes());
        put_canonical_context(&mut aad, self.context);
        debug_assert_eq!(aad.len(), len);
        aad
    }
}

/// A [`KeyEncryptionKey`] with its AES-256-GCM cipher set up once (the AES key schedule and
/// the GHASH table), for sealing and opening many envelopes.
///
/// Everything the free functions of this module do, it does with the same bytes in and out;
/// [`generate_and_wrap_data_key`](Self::generate_and_wrap_data_key) makes a data key and its
/// envelope with one random draw and one AEAD seal.
///
/// Not `Clone`; `Debug` is redacted. It owns the [`KeyEncryptionKey`] (zeroized on drop), which
/// also opens the rare envelope written with ChaCha20-Poly1305. **Limit:** the expanded
/// cipher state lives inside ring's `LessSafeKey`, which does not zeroize itself and which this
/// crate cannot wipe without `unsafe`; the AES-256 key schedule begins with the key itself, so
/// until that memory is reused a copy of the key stays in freed heap (or wherever the
/// `PreparedKek` lived). The free functions have the same limit, once per call, on the stack.
pub struct PreparedKek {
    kek: KeyEncryptionKey,
    aes: LessSafeKey,
}

impl PreparedKek {
    /// Prepares `kek`: sets up AES-256-GCM under it, once.
    pub fn new(kek: KeyEncryptionKey) -> Self {
        let aes = Algorithm::Aes256Gcm.less_safe_key(kek.expose_secret()).expect("a key-encryption key is 32 bytes");
        Self { kek, aes }
    }

    /// The key-encryption key this was prepared from (to persist it sealed, for example).
    pub fn key_encryption_key(&self) -> &KeyEncryptionKey {
        &self.kek
    }

    /// A prepared copy of `kek`, for the free functions (which borrow their key).
    fn copy_of(kek: &KeyEncryptionKey) -> Self {
        Self::new(KeyEncryptionKey::from_bytes(kek.expose_secret()).expect("a key-encryption key is 32 bytes long"))
    }

    /// Calls `f` with a cipher for `algorithm`: the prepared one for AES-256-GCM (what every
    /// writer uses); for ChaCha20-Poly1305, one set up for this call.
    fn with_cipher<T>(
        &self,
        algorithm: Algorithm,
        f: impl FnOnce(&LessSafeKey) -> Result<T, CryptoError>,
    ) -> Result<T, CryptoError> {
        match algorithm {
            Algorithm::Aes256Gcm => f(&self.aes),
            other => f(&other.less_safe_key(self.kek.expose_secret())?),
        }
    }

    /// Seals `plaintext` (at most [`MAX_PLAINTEXT_LEN`] bytes) with AES-256-GCM, bound to
    /// `binding`, under a fresh random nonce. The same as [`seal`].
    pub fn seal(&self, plaintext: &[u8], binding: &Binding<'_>) -> Result<Vec<u8>, CryptoError> {
        self.seal_with_nonce(Algorithm::Aes256Gcm, random_nonce()?, plaintext, binding)
    }

    pub(crate) fn seal_with_nonce(
        &self,
        algorithm: Algorithm,
        nonce: [u8; NONCE_LEN],
        plaintext: &[u8],
        binding: &Binding<'_>,
    ) -> Result<Vec<u8>, CryptoError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(CryptoError::invalid("plaintext", "an envelope holds at most 4096 bytes"));
        }
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.push(ENVELOPE_FORMAT_VERSION);
        out.push(algorithm.id());
        out.extend_from_slice(&nonce);
        let aad = binding.aad(&out);
        out.extend_from_slice(plaintext);
        let tag = self.with_cipher(algorithm, |key| {
            Ok(key.seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut out[HEADER_LEN..],
            )?)
        })?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens an envelope made with this key-encryption key and `binding`; the plaintext is
    /// zeroized on drop. The same as [`open`].
    pub fn open(&self, envelope: &[u8], binding: &Binding<'_>) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let (algorithm, header) = parse_header(envelope)?;
        let aad = binding.aad(header);
        let nonce = Nonce::try_assume_unique_for_key(&envelope[2..HEADER_LEN]).map_err(|_| CryptoError::Malformed)?;
        let mut buf = Zeroizing::new(envelope[HEADER_LEN..].to_vec());
        let len = self.with_cipher(algorithm, |key| Ok(key.open_in_place(nonce, Aad::from(&aad), &mut buf)?.len()))?;
        buf.truncate(len);
        Ok(buf)
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
    /// system random number generator (the key and the nonce together) and one AEAD seal.
    /// The envelope is the one [`wrap_data_key`] writes for that key and nonce.
    pub fn generate_and_wrap_data_key(
        &self,
        spec: KeySpec,
        binding: &Binding<'_>,
    ) -> Result<(PlaintextDataKey, WrappedDataKey), CryptoError> {
        let key_len = spec.key_len();
        if key_len > MAX_DATA_KEY_LEN {
            return Err(CryptoError::invalid("key_spec", "not a data key length"));
        }
        let mut random = Zeroizing::new([0u8; MAX_DATA_KEY_LEN + NONCE_LEN]);
        let random = &mut random[..key_len + NONCE_LEN];
        fill_random(random)?;
        let (key, nonce) = random.split_at(key_len);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("NONCE_LEN bytes");
        let data_key = PlaintextDataKey::from_bytes(key)?;
        let wrapped = self.seal_with_nonce(Algorithm::Aes256Gcm, nonce, key, binding)?;
        Ok((data_key, WrappedDataKey::from(wrapped)))
    }
}

impl fmt::Debug for PreparedKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PreparedKek").field(&REDACTED).finish()
    }
}

/// Seals `plaintext` (at most [`MAX_PLAINTEXT_LEN`] bytes) under `kek` with AES-256-GCM, bound
/// to `binding`.
pub fn seal(kek: &KeyEncryptionKey, plaintext: &[u8], binding: &Binding<'_>) -> Result<Vec<u8>, CryptoError> {
    PreparedKek::copy_of(kek).seal(plaintext, binding)
}

/// Opens an envelope made by [`seal`] with the same `kek` and `binding`; the plaintext is
/// zeroized on drop.
pub fn open(kek: &KeyEncryptionKey, envelope: &[u8], binding: &Binding<'_>) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    PreparedKek::copy_of(kek).open(envelope, binding)
}

/// Checks an envelope's framing (length, version, algorithm) without any key.
/// Returns the algorithm and the header bytes.
pub(crate) fn parse_header(envelope: &[u8]) -> Result<(Algorithm, &[u8]), CryptoError> {
    if envelope.len() < OVERHEAD || envelope.len() > OVERHEAD + MAX_PLAINTEXT_LEN {
        return Err(CryptoError::Malformed);
    }
    if envelope[0] != ENVELOPE_FORMAT_VERSION {
        return Err(CryptoError::Malformed);
    }
    let algorithm = Algorithm::from_id(envelope[1]).ok_or(CryptoError::Malformed)?;
    Ok((algorithm, &envelope[..HEADER_LEN]))
}

/// Checks that `bytes` is framed as an envelope of this format (right length range, known
/// version and algorithm). Says nothing about authenticity.
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

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn to_hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn kat_kek() -> KeyEncryptionKey {
        KeyEncryptionKey::from_bytes(&(0u8..32).collect::<Vec<_>>()).unwrap()
    }

    const KAT_NONCE: [u8; NONCE_LEN] = [0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xAB];

    /// Fixed KEK 00..1f, nonce a0..ab, key id "master-1" v7, context {bucket: photos, object: cat.jpg}.
    #[test]
    fn known_answer_vectors() {
        let context = ctx(&[("object", "cat.jpg"), ("bucket", "photos")]);
        let binding = Binding { master_key_id: "master-1", master_key_version: 7, context: &context };
        let plaintext: Vec<u8> = (0x10u8..0x30).collect();
        let cases = [(Algorithm::Aes256Gcm, AES_KAT), (Algorithm::ChaCha20Poly1305, CHACHA_KAT)];
        for (algorithm, expected) in cases {
            let sealed =
                PreparedKek::new(kat_kek()).seal_with_nonce(algorithm, KAT_NONCE, &plaintext, &binding).unwrap();
            assert_eq!(to_hex(&sealed), expected, "{algorithm:?}");
            assert_eq!(&*open(&kat_kek(), &hex(expected), &binding).unwrap(), &plaintext);
            assert_eq!(&*PreparedKek::new(kat_kek()).open(&hex(expected), &binding).unwrap(), &plaintext);
        }
    }

    /// The one-draw path writes exactly the envelope `wrap_data_key` writes for the same key
    /// and nonce, and each path opens what the other wrote.
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
            let nonce: [u8; NONCE_LEN] = wrapped.as_bytes()[2..HEADER_LEN].try_into().unwrap();
            let again = prepared.seal_with_nonce(Algorithm::Aes256Gcm, nonce, data_key.expose_secret(), &binding);
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
        assert_ne!(wa.as_bytes()[2..HEADER_LEN], wb.as_bytes()[2..HEADER_LEN], "fresh nonces");
        // The key and the nonce come from one draw, but not the same bytes of it.
        assert!(!a.expose_secret().windows(NONCE_LEN).any(|w| w == &wa.as_bytes()[2..HEADER_LEN]));
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

    // The first two cases of `docs/vectors/envelope-v1.json`, which the independent Python
    // checker `docs/vectors/check.py` re-derives.
    const AES_KAT: &str = "0101a0a1a2a3a4a5a6a7a8a9aaabf6096e3e51de14a87a7c9dc81b67dec1508d7b33b692644bb4270cad53865b2ed537b42d93bb2c65b401913672641f6f";
    const CHACHA_KAT: &str = "0102a0a1a2a3a4a5a6a7a8a9aaab1cba6a4c59f3d4bab816e90fe0e7e3e4bd7ff19c674f46849cf1f19a5d4fed23aa648c363009653daf71ae36a0244c18";

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
            assert!(open(&kek, &bad, &binding).is_err(), "bit {i}");
        }
        for len in 0..sealed.len() {
            assert!(open(&kek, &sealed[..len], &binding).is_err(), "truncated to {len}");
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(open(&kek, &longer, &binding).is_err());
        // Rewriting the algorithm byte (a downgrade attempt) is caught by the AAD.
        let mut chacha = sealed.clone();
        chacha[1] = Algorithm::ChaCha20Poly1305.id();
        assert_eq!(open(&kek, &chacha, &binding).unwrap_err(), CryptoError::Unauthenticated);
    }

    #[test]
    fn malformed_framing_is_refused_before_decrypting() {
        let kek = kat_kek();
        let context = EncryptionContext::new();
        let binding = Binding { master_key_id: "k", master_key_version: 1, context: &context };
        let mut good = seal(&kek, b"", &binding).unwrap();
        assert_eq!(good.len(), OVERHEAD);
        assert!(open(&kek, &good, &binding).unwrap().is_empty());
        good[0] = 2;
        assert_eq!(open(&kek, &good, &binding).unwrap_err(), CryptoError::Malformed);
        good[0] = 1;
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
