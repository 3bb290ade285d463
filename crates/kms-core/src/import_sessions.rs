//! [`ImportSessions`]: the one-time RSA wrapping keys and import tokens of BYOK, above every
//! backend (`docs/byok.md`).
//!
//! `GetParametersForImport` makes a fresh [`ImportWrappingKey`] per request and a random
//! 32-byte token bound to the key id and that wrapping key. A token is accepted only for its
//! key, until it expires ([`IMPORT_PARAMETERS_LIFETIME`], 24 h) and until it was used by a
//! successful import. Sessions live in this process's memory only, never on disk: after a
//! restart (or a reconfiguration that replaces the manager) a caller asks for new parameters.
//!
//! At most [`MAX_IMPORT_SESSIONS`] sessions are kept: a new one evicts the oldest, whose token
//! then answers `invalid_import_token`. An expired session keeps only its token, key id and
//! expiry (its private key is dropped at once), so that its caller is told
//! `expired_import_token` rather than `invalid_import_token`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kms_crypto::wrapping::ImportWrappingKey;
use kms_types::byok::{IMPORT_PARAMETERS_LIFETIME, ImportRefusal};
use kms_types::error::{KmsError, Result};
use time::OffsetDateTime;

/// Most import sessions kept at once.
pub const MAX_IMPORT_SESSIONS: usize = 1024;

/// Length of an import token.
pub const IMPORT_TOKEN_LEN: usize = 32;

/// The clock sessions expire by (injectable for tests).
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

struct Session {
    key_id: String,
    valid_to: OffsetDateTime,
    /// `None` once expired: the private key is dropped as soon as it is of no use.
    wrapping_key: Option<Arc<ImportWrappingKey>>,
    issued: u64,
}

/// The outstanding import parameters. See the [module docs](self).
pub struct ImportSessions {
    sessions: Mutex<HashMap<[u8; IMPORT_TOKEN_LEN], Session>>,
    clock: Clock,
    lifetime: Duration,
    capacity: usize,
    issued: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for ImportSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportSessions")
            .field("outstanding", &self.lock().len())
            .field("lifetime", &self.lifetime)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Default for ImportSessions {
    fn default() -> Self {
        Self::new(Arc::new(OffsetDateTime::now_utc), IMPORT_PARAMETERS_LIFETIME, MAX_IMPORT_SESSIONS)
    }
}

impl ImportSessions {
    /// Sessions that expire `lifetime` after they are issued by `clock`, at most `capacity`
    /// of them (at least one).
    pub fn new(clock: Clock, lifetime: Duration, capacity: usize) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            clock,
            lifetime,
            capacity: capacity.max(1),
            issued: Default::default(),
        }
    }

    /// Now, by this registry's clock.
    pub fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; IMPORT_TOKEN_LEN], Session>> {
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers `wrapping_key` for `key_id`; returns the token and its expiry.
    pub fn issue(
        &self,
        key_id: &str,
        wrapping_key: ImportWrappingKey,
    ) -> Result<([u8; IMPORT_TOKEN_LEN], OffsetDateTime)> {
        let mut token = [0u8; IMPORT_TOKEN_LEN];
        kms_crypto::rand::fill(&mut token)?;
        let now = self.now();
        let valid_to = now + self.lifetime;
        let issued = self.issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut sessions = self.lock();
        expire(&mut sessions, now);
        while sessions.len() >= self.capacity {
            let oldest = sessions.iter().min_by_key(|(_, s)| s.issued).map(|(t, _)| *t);
            match oldest {
                Some(token) => sessions.remove(&token),
                None => break,
            };
        }
        sessions.insert(
            token,
            Session { key_id: key_id.to_owned(), valid_to, wrapping_key: Some(Arc::new(wrapping_key)), issued },
        );
        Ok((token, valid_to))
    }

    /// The wrapping key of `token` if it was issued for `key_id` and has not expired.
    pub fn wrapping_key(&self, key_id: &str, token: &[u8]) -> Result<Arc<ImportWrappingKey>> {
        let refused = |reason| Err(KmsError::import_refused(key_id, reason));
        let Ok(token) = <[u8; IMPORT_TOKEN_LEN]>::try_from(token) else {
            return refused(ImportRefusal::InvalidImportToken);
        };
        let now = self.now();
        let mut sessions = self.lock();
        expire(&mut sessions, now);
        match sessions.get(&token) {
            Some(session) if session.key_id != key_id => refused(ImportRefusal::InvalidImportToken),
            Some(Session { wrapping_key: Some(key), .. }) => Ok(Arc::clone(key)),
            Some(_) => refused(ImportRefusal::ExpiredImportToken),
            None => refused(ImportRefusal::InvalidImportToken),
        }
    }

    /// Forgets `token` (after a successful import: a token imports once).
    pub fn consume(&self, token: &[u8]) {
        if let Ok(token) = <[u8; IMPORT_TOKEN_LEN]>::try_from(token) {
            self.lock().remove(&token);
        }
    }

    /// How many sessions are held (expired ones included).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops the private key of every session past its expiry.
fn expire(sessions: &mut HashMap<[u8; IMPORT_TOKEN_LEN], Session>, now: OffsetDateTime) {
    for session in sessions.values_mut() {
        if session.valid_to <= now {
            session.wrapping_key = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use kms_types::byok::WrappingKeySpec;

    use super::*;

    fn refusal(result: Result<Arc<ImportWrappingKey>>) -> ImportRefusal {
        match result {
            Err(KmsError::ImportRefused { reason, .. }) => reason,
            other => panic!("expected ImportRefused, got {other:?}"),
        }
    }

    fn key() -> ImportWrappingKey {
        ImportWrappingKey::generate(WrappingKeySpec::Rsa3072).unwrap()
    }

    #[test]
    fn tokens_are_bound_to_their_key_expire_and_are_used_once() {
        let now = Arc::new(AtomicI64::new(1_790_848_800));
        let clock_now = Arc::clone(&now);
        let clock: Clock =
            Arc::new(move || OffsetDateTime::from_unix_timestamp(clock_now.load(Ordering::SeqCst)).unwrap());
        let sessions = ImportSessions::new(clock, Duration::from_secs(60), 8);
        let (token, valid_to) = sessions.issue("k1", key()).unwrap();
        assert_eq!(valid_to.unix_timestamp(), 1_790_848_860);
        sessions.wrapping_key("k1", &token).unwrap();
        assert_eq!(refusal(sessions.wrapping_key("k2", &token)), ImportRefusal::InvalidImportToken);
        assert_eq!(refusal(sessions.wrapping_key("k1", &token[1..])), ImportRefusal::InvalidImportToken);
        assert_eq!(refusal(sessions.wrapping_key("k1", &[0; 32])), ImportRefusal::InvalidImportToken);
        now.store(1_790_848_860, Ordering::SeqCst);
        assert_eq!(refusal(sessions.wrapping_key("k1", &token)), ImportRefusal::ExpiredImportToken);

        let (again, _) = sessions.issue("k1", key()).unwrap();
        sessions.wrapping_key("k1", &again).unwrap();
        sessions.consume(&again);
        assert_eq!(refusal(sessions.wrapping_key("k1", &again)), ImportRefusal::InvalidImportToken);
    }

    #[test]
    fn the_oldest_session_is_evicted_beyond_capacity() {
        let sessions = ImportSessions::new(Arc::new(OffsetDateTime::now_utc), Duration::from_secs(60), 2);
        let (first, _) = sessions.issue("k", key()).unwrap();
        let (second, _) = sessions.issue("k", key()).unwrap();
        let (third, _) = sessions.issue("k", key()).unwrap();
        assert_eq!(sessions.len(), 2);
        assert_eq!(refusal(sessions.wrapping_key("k", &first)), ImportRefusal::InvalidImportToken);
        sessions.wrapping_key("k", &second).unwrap();
        sessions.wrapping_key("k", &third).unwrap();
        assert!(!format!("{sessions:?}").contains("Rsa"), "{sessions:?}");
    }
}
