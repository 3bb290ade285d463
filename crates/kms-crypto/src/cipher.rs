//! [`ObjectCipher`]: the spec's AEAD interface for object data, on ring, whole-buffer and in
//! place. The streaming format seals and opens every segment through it.
//!
//! One cipher suite is one implementation: [`Aes256GcmCipher`] and [`ChaCha20Poly1305Cipher`].
//! [`SuiteCipher`] holds whichever one an [`Algorithm`] read at run time names (a stream's
//! header, say) and forwards to it with a `match`: static dispatch, no `dyn` and no allocation
//! on the data path, which is how [`crate::stream`] holds its segment cipher. [`new_cipher`]
//! boxes one for callers that want a trait object. Every method takes the nonce from the
//! caller.
//!
//! Adding a suite is adding its [`Algorithm`], one `ObjectCipher` implementation and its
//! [`SuiteCipher`] variant; the stream, whose header names the algorithm, then carries it.
//!
//! <div class="warning">
//!
//! A nonce must never be used twice with the same key. These ciphers cannot check that; use
//! them with a fresh key per object (as [`crate::stream`] does) or with random nonces
//! ([`crate::aead::RandomNonceKey`] draws them for you).
//!
//! </div>

use std::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce, Tag};
use zeroize::Zeroizing;

use crate::aead::{Algorithm, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::error::CryptoError;

/// An AEAD cipher for object data: 32-byte key, 12-byte nonce ("IV"), 16-byte tag.
pub trait ObjectCipher: Send + Sync + fmt::Debug {
    /// The algorithm.
    fn algorithm(&self) -> Algorithm;

    /// Key length in bytes.
    fn key_size(&self) -> usize {
        KEY_LEN
    }

    /// Nonce length in bytes.
    fn iv_size(&self) -> usize {
        NONCE_LEN
    }

    /// Tag length in bytes.
    fn tag_size(&self) -> usize {
        TAG_LEN
    }

    /// Encrypts `in_out` in place with `iv` and `aad`; returns the tag.
    fn seal_in_place(&self, iv: &[u8; NONCE_LEN], aad: &[u8], in_out: &mut [u8]) -> Result<[u8; TAG_LEN], CryptoError>;

    /// Decrypts `in_out` in place after checking `tag`. On failure the contents of `in_out`
    /// are unspecified and must be discarded.
    fn open_in_place(
        &self,
        iv: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError>;

    /// Encrypts a copy of `plaintext`; returns `(ciphertext, tag)`.
    fn encrypt(
        &self,
        plaintext: &[u8],
        iv: &[u8; NONCE_LEN],
        aad: &[u8],
    ) -> Result<(Vec<u8>, [u8; TAG_LEN]), CryptoError> {
        let mut out = plaintext.to_vec();
        let tag = self.seal_in_place(iv, aad, &mut out)?;
        Ok((out, tag))
    }

    /// Decrypts a copy of `ciphertext` after checking `tag`; the plaintext is zeroized on drop.
    fn decrypt(
        &self,
        ciphertext: &[u8],
        iv: &[u8; NONCE_LEN],
        tag: &[u8; TAG_LEN],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut out = Zeroizing::new(ciphertext.to_vec());
        self.open_in_place(iv, aad, &mut out, tag)?;
        Ok(out)
    }
}

macro_rules! ring_cipher {
    ($(#[$doc:meta])* $name:ident, $alg:expr) => {
        $(#[$doc])*
        pub struct $name(LessSafeKey);

        impl $name {
            /// A cipher keyed with `key` (32 bytes).
            pub fn new(key: &[u8]) -> Result<Self, CryptoError> {
                Ok(Self($alg.less_safe_key(key)?))
            }
        }

        impl ObjectCipher for $name {
            fn algorithm(&self) -> Algorithm {
                $alg
            }

            #[inline]
            fn seal_in_place(&self, iv: &[u8; NONCE_LEN], aad: &[u8], in_out: &mut [u8]) -> Result<[u8; TAG_LEN], CryptoError> {
                let tag = self.0.seal_in_place_separate_tag(Nonce::assume_unique_for_key(*iv), Aad::from(aad), in_out)?;
                let mut out = [0u8; TAG_LEN];
                out.copy_from_slice(tag.as_ref());
                Ok(out)
            }

            #[inline]
            fn open_in_place(
                &self,
                iv: &[u8; NONCE_LEN],
                aad: &[u8],
                in_out: &mut [u8],
                tag: &[u8; TAG_LEN],
            ) -> Result<(), CryptoError> {
                let nonce = Nonce::assume_unique_for_key(*iv);
                self.0.open_in_place_separate_tag(nonce, Aad::from(aad), Tag::from(*tag), in_out, 0..)?;
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }
    };
}

ring_cipher!(
    /// AES-256-GCM on ring.
    Aes256GcmCipher,
    Algorithm::Aes256Gcm
);
ring_cipher!(
    /// ChaCha20-Poly1305 on ring.
    ChaCha20Poly1305Cipher,
    Algorithm::ChaCha20Poly1305
);

/// The [`ObjectCipher`] of an [`Algorithm`] chosen at run time: one variant per suite, each
/// holding that suite's own implementation. Every call is a `match` and a direct call into
/// it (no vtable), so a hot loop over segments costs what the suite itself costs.
#[derive(Debug)]
#[non_exhaustive]
pub enum SuiteCipher {
    /// [`Algorithm::Aes256Gcm`].
    Aes256Gcm(Aes256GcmCipher),
    /// [`Algorithm::ChaCha20Poly1305`].
    ChaCha20Poly1305(ChaCha20Poly1305Cipher),
}

impl SuiteCipher {
    /// The cipher of `algorithm`, keyed with `key` (32 bytes).
    pub fn new(algorithm: Algorithm, key: &[u8]) -> Result<Self, CryptoError> {
        Ok(match algorithm {
            Algorithm::Aes256Gcm => Self::Aes256Gcm(Aes256GcmCipher::new(key)?),
            Algorithm::ChaCha20Poly1305 => Self::ChaCha20Poly1305(ChaCha20Poly1305Cipher::new(key)?),
        })
    }
}

impl ObjectCipher for SuiteCipher {
    fn algorithm(&self) -> Algorithm {
        match self {
            Self::Aes256Gcm(c) => c.algorithm(),
            Self::ChaCha20Poly1305(c) => c.algorithm(),
        }
    }

    #[inline]
    fn seal_in_place(&self, iv: &[u8; NONCE_LEN], aad: &[u8], in_out: &mut [u8]) -> Result<[u8; TAG_LEN], CryptoError> {
        match self {
            Self::Aes256Gcm(c) => c.seal_in_place(iv, aad, in_out),
            Self::ChaCha20Poly1305(c) => c.seal_in_place(iv, aad, in_out),
        }
    }

    #[inline]
    fn open_in_place(
        &self,
        iv: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        match self {
            Self::Aes256Gcm(c) => c.open_in_place(iv, aad, in_out, tag),
            Self::ChaCha20Poly1305(c) => c.open_in_place(iv, aad, in_out, tag),
        }
    }
}

/// The [`ObjectCipher`] for `algorithm`, keyed with `key` (32 bytes), as a trait object.
pub fn new_cipher(algorithm: Algorithm, key: &[u8]) -> Result<Box<dyn ObjectCipher>, CryptoError> {
    Ok(Box::new(SuiteCipher::new(algorithm, key)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::hex;

    #[test]
    fn round_trip_both_ciphers_and_in_place() {
        for alg in Algorithm::ALL {
            let cipher = new_cipher(alg, &[7; 32]).unwrap();
            assert_eq!(cipher.algorithm(), alg);
            assert_eq!((cipher.key_size(), cipher.iv_size(), cipher.tag_size()), (32, 12, 16));
            let iv = [1; 12];
            let (ct, tag) = cipher.encrypt(b"hello object", &iv, b"aad").unwrap();
            assert_ne!(&ct[..], b"hello object");
            assert_eq!(&*cipher.decrypt(&ct, &iv, &tag, b"aad").unwrap(), b"hello object");
            assert_eq!(cipher.decrypt(&ct, &iv, &tag, b"aaD").unwrap_err(), CryptoError::Unauthenticated);
            assert_eq!(cipher.decrypt(&ct, &[2; 12], &tag, b"aad").unwrap_err(), CryptoError::Unauthenticated);
            let mut bad_tag = tag;
            bad_tag[0] ^= 1;
            assert_eq!(cipher.decrypt(&ct, &iv, &bad_tag, b"aad").unwrap_err(), CryptoError::Unauthenticated);

            let mut buf = b"in place".to_vec();
            let tag = cipher.seal_in_place(&iv, b"", &mut buf).unwrap();
            cipher.open_in_place(&iv, b"", &mut buf, &tag).unwrap();
            assert_eq!(&buf, b"in place");
        }
        assert!(matches!(Aes256GcmCipher::new(&[0; 16]), Err(CryptoError::InvalidArgument { field: "key", .. })));
        assert!(matches!(
            ChaCha20Poly1305Cipher::new(&[0; 33]),
            Err(CryptoError::InvalidArgument { field: "key", .. })
        ));
        assert_eq!(format!("{:?}", Aes256GcmCipher::new(&[9; 32]).unwrap()), "Aes256GcmCipher { .. }");
    }

    /// The suite enum seals exactly as the suite's own implementation does, and refuses a
    /// wrong key length for either suite.
    #[test]
    fn suite_cipher_forwards_to_the_suite_implementation() {
        let iv = [3; 12];
        for alg in Algorithm::ALL {
            let suite = SuiteCipher::new(alg, &[5; 32]).unwrap();
            assert_eq!(suite.algorithm(), alg);
            let direct: Box<dyn ObjectCipher> = match alg {
                Algorithm::Aes256Gcm => Box::new(Aes256GcmCipher::new(&[5; 32]).unwrap()),
                Algorithm::ChaCha20Poly1305 => Box::new(ChaCha20Poly1305Cipher::new(&[5; 32]).unwrap()),
            };
            assert_eq!(suite.encrypt(b"segment", &iv, b"").unwrap(), direct.encrypt(b"segment", &iv, b"").unwrap());
            let (mut ct, mut tag) = suite.encrypt(b"segment", &iv, b"").unwrap();
            suite.open_in_place(&iv, b"", &mut ct, &tag).unwrap();
            assert_eq!(&ct, b"segment");
            tag[15] ^= 1;
            assert_eq!(suite.open_in_place(&iv, b"", &mut ct, &tag), Err(CryptoError::Unauthenticated));
            assert!(matches!(SuiteCipher::new(alg, &[5; 31]), Err(CryptoError::InvalidArgument { field: "key", .. })));
        }
    }

    /// Published vectors: NIST GCM test case 16 (AES-256) and RFC 8439 §2.8.2 (ChaCha20-Poly1305).
    #[test]
    fn published_vectors() {
        let aes =
            Aes256GcmCipher::new(&hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")).unwrap();
        let iv: [u8; 12] = hex("cafebabefacedbaddecaf888").try_into().unwrap();
        let pt = hex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let (ct, tag) = aes.encrypt(&pt, &iv, &aad).unwrap();
        assert_eq!(
            ct,
            hex(
                "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
            )
        );
        assert_eq!(tag.to_vec(), hex("76fc6ece0f4e1768cddf8853bb2d551b"));

        let chacha =
            ChaCha20Poly1305Cipher::new(&hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"))
                .unwrap();
        let iv: [u8; 12] = hex("070000004041424344454647").try_into().unwrap();
        let aad = hex("50515253c0c1c2c3c4c5c6c7");
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let (ct, tag) = chacha.encrypt(pt, &iv, &aad).unwrap();
        assert_eq!(&ct[..16], &hex("d31a8d34648e60db7b86afbc53ef7ec2")[..]);
        assert_eq!(tag.to_vec(), hex("1ae10b594f09e26a7e902ecbd0600691"));
    }
}
