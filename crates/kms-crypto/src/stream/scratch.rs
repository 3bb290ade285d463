//! [`Scratch`]: the segment buffer of the std and tokio adapters.
//!
//! A segment buffer holds plaintext, so it is zeroized when dropped. Two costs made small
//! objects slow when it was a `Zeroizing<Vec<u8>>` of a whole segment: `zeroize`'s `Vec` impl
//! wipes element by element with volatile byte writes (about 13 µs for 64 KiB here, against
//! under 1 µs of AES-GCM for a 4 KiB object; the `[u8]` impl is a `memset` plus a compiler
//! barrier), and the whole segment was zero-filled before use and wiped after it however
//! little of it an object used. So this buffer is allocated once at its full capacity, made
//! usable (zero-filled) only as far as it is used, and only that part is wiped, through the
//! slice impl: a small object pays for its own size. It never reallocates, so no copy of its
//! bytes is left behind unwiped.

use std::ops::Range;

use zeroize::Zeroize;

/// The smallest input window [`Scratch::window`] hands out.
const MIN_WINDOW: usize = 4096;

/// A fixed-capacity byte buffer, zero-filled on first use and zeroized (as far as it was
/// used) on drop.
pub(crate) struct Scratch {
    /// `len()` is how far the buffer has been used: every byte below it may hold a secret.
    bytes: Vec<u8>,
}

impl Scratch {
    /// A buffer of `capacity` bytes; nothing is allocated until first use.
    pub(crate) fn new(capacity: usize) -> Self {
        Self { bytes: Vec::with_capacity(capacity) }
    }

    /// The buffer's capacity.
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// `range` to write into; bytes never used before are zero-filled first.
    ///
    /// # Panics
    /// If `range` goes past the capacity (the callers size their buffers).
    pub(crate) fn get_mut(&mut self, range: Range<usize>) -> &mut [u8] {
        assert!(range.end <= self.bytes.capacity(), "a scratch buffer never reallocates");
        if range.end > self.bytes.len() {
            self.bytes.resize(range.end, 0);
        }
        &mut self.bytes[range]
    }

    /// `range`, which must have been written through [`get_mut`](Self::get_mut) or
    /// [`put`](Self::put).
    pub(crate) fn get(&self, range: Range<usize>) -> &[u8] {
        &self.bytes[range]
    }

    /// Copies `data` to `at..`, with no zero-fill of the bytes it is first to use.
    /// `at` must not be past the used part.
    pub(crate) fn put(&mut self, at: usize, data: &[u8]) {
        let end = at + data.len();
        assert!(at <= self.bytes.len() && end <= self.bytes.capacity(), "a scratch buffer never reallocates");
        let overlap = end.min(self.bytes.len());
        let (inside, beyond) = data.split_at(overlap.saturating_sub(at));
        self.bytes[at..at + inside.len()].copy_from_slice(inside);
        self.bytes.extend_from_slice(beyond);
    }

    /// An input window from `start` towards `end` (exclusive): all of it once the buffer has
    /// been used that far, otherwise at most twice what has been used so far (and at least
    /// [`MIN_WINDOW`] bytes), so a short input zero-fills and later zeroizes about its own
    /// length rather than the whole capacity.
    pub(crate) fn window(&mut self, start: usize, end: usize) -> &mut [u8] {
        let grown = (2 * self.bytes.len()).max(start + MIN_WINDOW);
        self.get_mut(start..end.min(grown))
    }

    /// Zeroizes the used part now (after a failure).
    pub(crate) fn wipe(&mut self) {
        self.bytes.as_mut_slice().zeroize();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.wipe();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_only_what_is_asked() {
        let mut s = Scratch::new(10_000);
        assert_eq!(s.bytes.len(), 0);
        s.put(0, b"abc");
        assert_eq!(s.get(0..3), b"abc");
        assert_eq!(s.bytes.len(), 3);
        s.put(1, b"XYZW");
        assert_eq!(s.get(0..5), b"aXYZW");
        s.get_mut(2..8).copy_from_slice(b"123456");
        assert_eq!(s.get(0..8), b"aX123456");
        s.put(0, b"q");
        assert_eq!(s.bytes.len(), 8, "writing inside the used part does not extend it");
    }

    #[test]
    #[should_panic(expected = "a scratch buffer never reallocates")]
    fn refuses_to_grow_past_capacity() {
        let mut s = Scratch::new(64);
        let capacity = s.capacity();
        s.get_mut(0..capacity + 1);
    }

    #[test]
    fn windows_grow_with_use() {
        let mut s = Scratch::new(100_000);
        assert_eq!(s.window(0, 70_000).len(), MIN_WINDOW);
        assert_eq!(s.window(MIN_WINDOW, 70_000).len(), MIN_WINDOW);
        assert_eq!(s.window(100, 70_000).len(), 2 * 2 * MIN_WINDOW - 100);
        assert_eq!(s.window(0, 10).len(), 10);
        s.get_mut(0..70_000);
        assert_eq!(s.window(0, 70_000).len(), 70_000, "full windows once used that far");
    }

    #[test]
    fn wipe_zeroizes_the_used_part() {
        let mut s = Scratch::new(64);
        s.put(0, &[0xAA; 40]);
        s.wipe();
        assert_eq!(s.get(0..40), &[0; 40]);
    }
}
