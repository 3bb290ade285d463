//! Randomness that is not a key: random bytes (salts, nonces, tokens), new key ids and the
//! jitter of retry pauses, all from the operating system's generator (through ring).
//!
//! The crates above draw their randomness here, so there is one generator, one error
//! ([`CryptoError::RandomUnavailable`]) and one shape of key id for every backend; `cargo xtask
//! ci` refuses `ring::rand` anywhere else.
//!
//! ```
//! let id = kms_crypto::rand::key_id()?;
//! assert_eq!(id.len(), 36);
//! let mut salt = [0u8; 16];
//! kms_crypto::rand::fill(&mut salt)?;
//! let pause = kms_crypto::rand::equal_jitter(std::time::Duration::from_millis(200));
//! assert!(pause >= std::time::Duration::from_millis(100) && pause <= std::time::Duration::from_millis(200));
//! # Ok::<(), kms_crypto::CryptoError>(())
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom, SystemRandom};

use crate::error::CryptoError;

/// Fills `buf` from the operating system's random number generator.
pub fn fill(buf: &mut [u8]) -> Result<(), CryptoError> {
    SystemRandom::new().fill(buf).map_err(|_| CryptoError::RandomUnavailable)
}

/// A new key id: a UUID version 7 (RFC 9562) in its 36-character lowercase form, 48 bits of
/// Unix milliseconds then 74 random bits.
///
/// Ids made later sort later, so the keys created together land in the same few pages of a
/// store's B-tree (the local backend commits 64 creates in a page or two, not 64 scattered
/// ones); 74 random bits keep ids made in the same millisecond distinct. The id passes
/// `kms_types::types::validate_key_id`.
pub fn key_id() -> Result<String, CryptoError> {
    let mut random = [0u8; 16];
    fill(&mut random)?;
    // A clock before 1970 is not worth an error: such ids still differ by their random bits.
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    Ok(uuid_v7(u64::try_from(millis).unwrap_or(u64::MAX), random))
}

/// The UUID version 7 of `unix_millis` (its low 48 bits) and the random bits of `random`.
fn uuid_v7(unix_millis: u64, mut random: [u8; 16]) -> String {
    random[..6].copy_from_slice(&unix_millis.to_be_bytes()[2..]);
    random[6] = (random[6] & 0x0f) | 0x70; // version 7
    random[8] = (random[8] & 0x3f) | 0x80; // variant 0b10
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// A pause drawn uniformly from `[ceiling / 2, ceiling]` ("equal jitter"): callers that retry
/// together spread out, and none waits less than half its backoff.
///
/// Jitter is not security-relevant, so a failed generator gives the midpoint instead of an
/// error.
pub fn equal_jitter(ceiling: Duration) -> Duration {
    let half = ceiling / 2;
    half + half.mul_f64(unit_fraction())
}

/// A uniform fraction in `[0, 1)` from 53 random bits (0.5 if the generator fails).
fn unit_fraction() -> f64 {
    let mut raw = [0u8; 8];
    match fill(&mut raw) {
        Ok(()) => (u64::from_le_bytes(raw) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn key_ids_are_valid_uuid_v7() {
        let id = key_id().unwrap();
        kms_types::types::validate_key_id("key_id", &id).unwrap();
        assert_eq!(id.len(), 36);
        let dashes: Vec<usize> = id.match_indices('-').map(|(i, _)| i).collect();
        assert_eq!(dashes, [8, 13, 18, 23]);
        assert!(id.bytes().all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{id}");
        assert_eq!(&id[14..15], "7", "version nibble");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "variant bits: {id}");
    }

    #[test]
    fn key_ids_are_unique() {
        let ids: HashSet<String> = (0..10_000).map(|_| key_id().unwrap()).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn key_ids_carry_the_time_and_sort_by_it() {
        let millis = 1_767_225_600_123u64; // 2026-01-01T00:00:00.123Z
        let a = uuid_v7(millis, [0xff; 16]);
        let b = uuid_v7(millis + 1, [0x00; 16]);
        assert_eq!(a, "019b76da-a87b-7fff-bfff-ffffffffffff");
        assert_eq!(b, "019b76da-a87c-7000-8000-000000000000");
        assert!(a < b, "a later millisecond sorts later whatever the random bits");
        assert_ne!(uuid_v7(millis, [1; 16]), uuid_v7(millis, [2; 16]), "random bits differ within one millisecond");
        let now = key_id().unwrap();
        assert!(now.as_str() > "0190", "ids made now carry the current time: {now}");
    }

    #[test]
    fn jitter_stays_within_half_and_whole_and_varies() {
        let ceiling = Duration::from_millis(400);
        let samples: Vec<Duration> = (0..200).map(|_| equal_jitter(ceiling)).collect();
        assert!(samples.iter().all(|d| *d >= ceiling / 2 && *d <= ceiling), "{samples:?}");
        let distinct: HashSet<Duration> = samples.iter().copied().collect();
        assert!(distinct.len() > 100, "jitter barely varies: {} distinct values", distinct.len());
        assert_eq!(equal_jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn fill_draws_fresh_bytes() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        fill(&mut a).unwrap();
        fill(&mut b).unwrap();
        assert_ne!(a, b);
        fill(&mut []).unwrap();
    }
}
