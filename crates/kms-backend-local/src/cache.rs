//! The bounded cache of opened keys: the data path's only memory cost per key.
//!
//! A key is opened (its record unsealed and each version's cipher prepared) the first time it
//! is used, and kept here, least recently used first out. Keys that are never touched cost
//! nothing in memory, whatever the store holds.
//!
//! The cache must never hand out a key older than a change that was acknowledged. The
//! writer updates it after each commit and before acknowledging; a reader that missed and
//! read the store concurrently inserts what it read only if no commit touched that key since
//! its miss (an epoch per commit and the epoch each key was last written at). When the
//! record of written keys grows past a bound it is forgotten wholesale, and readers from
//! before that point simply do not insert (they still answer with what they read, which was
//! current when they read it).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

use crate::record::KeyRecord;

/// Opened keys kept by default.
pub(crate) const DEFAULT_CACHE_CAPACITY: usize = 32 * 1024;
/// Written keys remembered for readers racing a commit, before the record is reset.
const TOUCHED_BOUND: usize = 16 * 1024;

/// A key as the cache holds it.
#[derive(Debug, Clone)]
pub(crate) enum Cached {
    /// Opened and usable according to its lifecycle state.
    Ready(Arc<KeyRecord>),
    /// Its record exists but cannot be opened; the reason.
    Unavailable(Arc<str>),
}

/// What a reader notes on a miss, to insert what it reads afterwards.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MissTicket(u64);

/// Hit and miss counts, and the current size, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct KeyCacheStats {
    /// Lookups answered from memory.
    pub hits: u64,
    /// Lookups that had to read and open a record.
    pub misses: u64,
    /// Opened keys held now.
    pub entries: u64,
    /// Most opened keys held at once.
    pub capacity: u64,
    /// Records read and opened from the store since it was opened (misses, listings of keys
    /// not in the cache, and the writer's read-modify-write of a change).
    pub records_opened: u64,
}

struct State {
    lru: LruCache<String, Cached>,
    /// Incremented by every commit that changes keys.
    epoch: u64,
    /// The epoch each recently written key was last changed at.
    touched: HashMap<String, u64>,
    /// Readers whose ticket is older than this cannot tell whether their key was written.
    floor: u64,
}

/// The cache (see the module docs).
pub(crate) struct KeyCache {
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
    pub(crate) opened: AtomicU64,
    capacity: usize,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache").field("stats", &self.stats()).finish()
    }
}

impl KeyCache {
    pub(crate) fn new(capacity: NonZeroUsize) -> Self {
        Self {
            state: Mutex::new(State { lru: LruCache::new(capacity), epoch: 0, touched: HashMap::new(), floor: 0 }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            capacity: capacity.get(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached key, or a ticket to insert it after reading the store.
    pub(crate) fn get(&self, key_id: &str) -> Result<Cached, MissTicket> {
        let mut state = self.lock();
        match state.lru.get(key_id) {
            Some(found) => {
                let found = found.clone();
                drop(state);
                self.hits.fetch_add(1, Ordering::Relaxed);
                Ok(found)
            }
            None => {
                let ticket = MissTicket(state.epoch);
                drop(state);
                self.misses.fetch_add(1, Ordering::Relaxed);
                Err(ticket)
            }
        }
    }

    /// The cached key without counting or promoting it (listings).
    pub(crate) fn peek(&self, key_id: &str) -> Option<Cached> {
        self.lock().lru.peek(key_id).cloned()
    }

    /// Inserts what a reader read after `ticket`'s miss, unless a commit changed that key
    /// meanwhile (the writer's entry, or its removal, wins).
    pub(crate) fn fill(&self, key_id: &str, ticket: MissTicket, value: Cached) {
        let mut state = self.lock();
        let written_since = ticket.0 < state.floor || state.touched.get(key_id).is_some_and(|&at| at > ticket.0);
        if !written_since {
            state.lru.put(key_id.to_owned(), value);
        }
    }

    /// After a commit: the new state of every key it changed (`None`: removed).
    pub(crate) fn committed(&self, changes: impl IntoIterator<Item = (String, Option<Arc<KeyRecord>>)>) {
        let mut state = self.lock();
        state.epoch += 1;
        let epoch = state.epoch;
        for (key_id, record) in changes {
            match record {
                Some(record) => {
                    state.lru.put(key_id.clone(), Cached::Ready(record));
                }
                None => {
                    state.lru.pop(&key_id);
                }
            }
            state.touched.insert(key_id, epoch);
        }
        if state.touched.len() > TOUCHED_BOUND {
            state.touched.clear();
            state.floor = epoch;
        }
    }

    /// Forgets every key (the store is closed).
    pub(crate) fn clear(&self) {
        self.lock().lru.clear();
    }

    pub(crate) fn stats(&self) -> KeyCacheStats {
        let entries = self.lock().lru.len() as u64;
        KeyCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries,
            capacity: self.capacity as u64,
            records_opened: self.opened.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable(why: &str) -> Cached {
        Cached::Unavailable(why.into())
    }

    fn why(c: Option<Cached>) -> String {
        match c {
            Some(Cached::Unavailable(w)) => w.to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn a_reader_racing_a_commit_does_not_overwrite_the_newer_state() {
        let cache = KeyCache::new(NonZeroUsize::new(4).unwrap());
        let ticket = cache.get("k").unwrap_err();
        // A commit removes `k` after the reader's miss and before its fill.
        cache.committed([("k".to_owned(), None)]);
        cache.fill("k", ticket, unavailable("stale"));
        assert!(cache.peek("k").is_none(), "the stale read was not inserted");
        // A reader that missed after the commit fills.
        let ticket = cache.get("k").unwrap_err();
        cache.fill("k", ticket, unavailable("fresh"));
        assert_eq!(why(cache.peek("k")), "fresh");
        // A commit to another key does not block the fill.
        let ticket = cache.get("j").unwrap_err();
        cache.committed([("other".to_owned(), None)]);
        cache.fill("j", ticket, unavailable("j"));
        assert_eq!(why(cache.peek("j")), "j");
    }

    #[test]
    fn forgetting_written_keys_makes_older_readers_skip_their_fill() {
        let cache = KeyCache::new(NonZeroUsize::new(4).unwrap());
        let ticket = cache.get("k").unwrap_err();
        cache.committed((0..=TOUCHED_BOUND).map(|i| (format!("w{i}"), None)));
        cache.fill("k", ticket, unavailable("maybe stale"));
        assert!(cache.peek("k").is_none());
    }

    #[test]
    fn the_cache_is_bounded_and_counts_hits_and_misses() {
        let cache = KeyCache::new(NonZeroUsize::new(2).unwrap());
        for id in ["a", "b", "c"] {
            let ticket = cache.get(id).unwrap_err();
            cache.fill(id, ticket, unavailable(id));
        }
        cache.get("a").expect_err("the least recently used key was evicted");
        assert_eq!(why(cache.get("c").ok()), "c");
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries, stats.capacity), (1, 4, 2, 2));
    }
}
