//! The signing keys the server derived, kept for the day of their scope: deriving one is four
//! HMACs of the secret (date, region, service, `aws4_request`), which every request of an
//! access key repeats for the same result until the date changes. Profiling
//! `cargo xtask bench aws` put SigV4 among the largest costs of the AWS path; with the key kept,
//! a verification is the canonical request's hash and one HMAC.
//!
//! Keys are held zeroized-on-drop, by access key id and then scope date (so a lookup borrows
//! the request's strings instead of building a key); region and service are the server's own
//! (checked before the lookup). The table is bounded: past [`MAX_KEYS`] it is emptied, so old
//! days never pile up.

use std::collections::HashMap;
use std::sync::Mutex;

use super::sigv4::{Authorization, SigningKey, signing_key};

/// Most keys kept (access keys × days in flight; a handful in practice).
const MAX_KEYS: usize = 1024;

/// Signing keys by access key id, then scope date.
#[derive(Default)]
pub(crate) struct SigningKeys {
    keys: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    by_access_key: HashMap<String, HashMap<String, SigningKey>>,
    len: usize,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys").finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// The signing key of `auth`'s scope under `secret`, derived once per access key and day.
    pub(crate) fn get(&self, auth: &Authorization, secret: &[u8]) -> SigningKey {
        let mut table = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = table.by_access_key.get(&auth.access_key_id).and_then(|days| days.get(&auth.date)) {
            return key.clone();
        }
        let key = signing_key(secret, auth);
        if table.len >= MAX_KEYS {
            *table = Table::default();
        }
        let days = table.by_access_key.entry(auth.access_key_id.clone()).or_default();
        days.insert(auth.date.clone(), key.clone());
        table.len += 1;
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(access_key_id: &str, date: &str) -> Authorization {
        Authorization {
            access_key_id: access_key_id.into(),
            date: date.into(),
            region: "us-east-1".into(),
            service: "kms".into(),
            signed_headers: vec!["host".into()],
            signature: String::new(),
        }
    }

    #[test]
    fn a_kept_key_is_the_derived_one_for_its_access_key_and_day() {
        let keys = SigningKeys::default();
        let a = auth("AKIA1", "20261202");
        assert_eq!(*keys.get(&a, b"secret-1"), *signing_key(b"secret-1", &a));
        // Kept: the same key the second time.
        assert_eq!(*keys.get(&a, b"secret-1"), *signing_key(b"secret-1", &a));
        let next_day = auth("AKIA1", "20261203");
        assert_eq!(*keys.get(&next_day, b"secret-1"), *signing_key(b"secret-1", &next_day));
        assert_ne!(*signing_key(b"secret-1", &a), *signing_key(b"secret-1", &next_day));
        let other = auth("AKIA2", "20261202");
        assert_eq!(*keys.get(&other, b"secret-2"), *signing_key(b"secret-2", &other));
    }

    #[test]
    fn the_table_stays_bounded() {
        let keys = SigningKeys::default();
        for i in 0..(MAX_KEYS + 10) {
            keys.get(&auth(&format!("AKIA{i}"), "20261202"), b"s");
        }
        let table = keys.keys.lock().unwrap();
        assert!(table.len <= MAX_KEYS);
        assert_eq!(table.len, table.by_access_key.values().map(HashMap::len).sum::<usize>());
    }
}
