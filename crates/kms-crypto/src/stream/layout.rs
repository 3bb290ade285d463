//! Lengths, object layouts and the plaintext-range → ciphertext-range mapping.

use std::ops::Range;

use super::keys::{Part, check_segment_size};
use super::{HEADER_LEN, MAX_SEGMENTS};
use crate::aead::TAG_LEN;
use crate::error::CryptoError;

const H: u64 = HEADER_LEN as u64;
const T: u64 = TAG_LEN as u64;

/// Number of segments of a stream with `plaintext_len` bytes (at least 1: an empty stream has
/// one empty final segment).
pub fn segment_count(plaintext_len: u64, segment_size: u32) -> u64 {
    plaintext_len.div_ceil(u64::from(segment_size.max(1))).max(1)
}

/// Length of the stream that encrypts `plaintext_len` bytes: header + plaintext + one tag per
/// segment. Refuses streams over [`MAX_SEGMENTS`] segments.
pub fn ciphertext_len(plaintext_len: u64, segment_size: u32) -> Result<u64, CryptoError> {
    check_segment_size(segment_size)?;
    let segments = segment_count(plaintext_len, segment_size);
    if segments > MAX_SEGMENTS {
        return Err(CryptoError::invalid("plaintext_len", "a stream holds at most 2^32 segments"));
    }
    segments
        .checked_mul(T)
        .and_then(|tags| tags.checked_add(H))
        .and_then(|fixed| fixed.checked_add(plaintext_len))
        .ok_or(CryptoError::invalid("plaintext_len", "too large"))
}

/// The plaintext length of a stream of `ciphertext_len` bytes, or [`CryptoError::Malformed`]
/// if no stream has that length.
pub fn plaintext_len(ciphertext_len: u64, segment_size: u32) -> Result<u64, CryptoError> {
    check_segment_size(segment_size).map_err(|_| CryptoError::Malformed)?;
    let s = u64::from(segment_size);
    let body = ciphertext_len.checked_sub(H).ok_or(CryptoError::Malformed)?;
    let full = body / (s + T);
    let rest = body % (s + T);
    let plaintext = match (full, rest) {
        (0, 0) => return Err(CryptoError::Malformed),
        (_, 0) => full * s,
        // A short final segment: at least one byte, or none when it is the only segment.
        (_, r) if r > T || (r == T && full == 0) => full * s + (r - T),
        _ => return Err(CryptoError::Malformed),
    };
    if segment_count(plaintext, segment_size) > MAX_SEGMENTS {
        return Err(CryptoError::Malformed);
    }
    Ok(plaintext)
}

/// One part of an [`ObjectLayout`]: its number and plaintext length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartLayout {
    /// The part.
    pub part: Part,
    /// Its plaintext length in bytes.
    pub plaintext_len: u64,
}

/// Where every stream of an object lies: one stream for a single-part object, one per part
/// (concatenated in order) for a multipart object. Built from the object's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLayout {
    segment_size: u32,
    parts: Vec<PartLayout>,
    /// Ciphertext offset of each part, and the total at the end.
    offsets: Vec<u64>,
    plaintext_offsets: Vec<u64>,
}

impl ObjectLayout {
    /// A single-part object ([`Part::Whole`]) of `plaintext_len` bytes.
    pub fn single(segment_size: u32, plaintext_len: u64) -> Result<Self, CryptoError> {
        Self::build(segment_size, vec![PartLayout { part: Part::Whole, plaintext_len }])
    }

    /// A multipart object: `parts` in upload order, numbered (never [`Part::Whole`]) and
    /// strictly increasing; all encrypted with `segment_size`.
    pub fn multipart(segment_size: u32, parts: Vec<PartLayout>) -> Result<Self, CryptoError> {
        if parts.is_empty() {
            return Err(CryptoError::invalid("parts", "a multipart object has at least one part"));
        }
        let mut previous = 0;
        for p in &parts {
            let n = p.part.as_u32();
            if n <= previous {
                return Err(CryptoError::invalid("parts", "part numbers must be positive and increasing"));
            }
            previous = n;
        }
        Self::build(segment_size, parts)
    }

    fn build(segment_size: u32, parts: Vec<PartLayout>) -> Result<Self, CryptoError> {
        check_segment_size(segment_size)?;
        let too_large = CryptoError::invalid("plaintext_len", "too large");
        let mut offsets = vec![0u64];
        let mut plaintext_offsets = vec![0u64];
        for p in &parts {
            let ct = ciphertext_len(p.plaintext_len, segment_size)?;
            let last = offsets[offsets.len() - 1];
            offsets.push(last.checked_add(ct).ok_or(too_large)?);
            let last = plaintext_offsets[plaintext_offsets.len() - 1];
            plaintext_offsets.push(last.checked_add(p.plaintext_len).ok_or(too_large)?);
        }
        Ok(Self { segment_size, parts, offsets, plaintext_offsets })
    }

    /// Plaintext bytes per segment.
    pub fn segment_size(&self) -> u32 {
        self.segment_size
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[PartLayout] {
        &self.parts
    }

    /// Total plaintext length.
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_offsets[self.parts.len()]
    }

    /// Total ciphertext length.
    pub fn ciphertext_len(&self) -> u64 {
        self.offsets[self.parts.len()]
    }

    /// The ciphertext range of part `index` (0-based position in [`parts`](Self::parts)).
    pub fn part_ciphertext_range(&self, index: usize) -> Range<u64> {
        self.offsets[index]..self.offsets[index + 1]
    }

    /// What to fetch and decrypt to get the plaintext bytes `range`: for every part the range
    /// touches, its header and the segments that cover the range, nothing else.
    pub fn plan(&self, range: Range<u64>) -> Result<RangePlan, CryptoError> {
        if range.start > range.end || range.end > self.plaintext_len() {
            return Err(CryptoError::invalid("range", "outside the object"));
        }
        let s = u64::from(self.segment_size);
        let mut pieces = Vec::new();
        for (i, p) in self.parts.iter().enumerate() {
            let (pt_start, pt_end) = (self.plaintext_offsets[i], self.plaintext_offsets[i + 1]);
            let (a, b) = (range.start.max(pt_start), range.end.min(pt_end));
            if a >= b {
                continue;
            }
            let (a, b) = (a - pt_start, b - pt_start);
            let base = self.offsets[i];
            let segments = segment_count(p.plaintext_len, self.segment_size);
            let first = a / s;
            let last = (b - 1) / s;
            let includes_final_segment = last == segments - 1;
            let end = if includes_final_segment { self.offsets[i + 1] } else { base + H + (last + 1) * (s + T) };
            pieces.push(PartRange {
                part: p.part,
                header: base..base + H,
                segments: base + H + first * (s + T)..end,
                first_segment: first,
                includes_final_segment,
                skip: a - first * s,
                len: b - a,
            });
        }
        Ok(RangePlan { segment_size: self.segment_size, pieces, plaintext_len: range.end - range.start })
    }
}

/// The piece of one part that a ranged read needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartRange {
    /// The part.
    pub part: Part,
    /// Ciphertext range of the part's header (in the whole object's ciphertext).
    pub header: Range<u64>,
    /// Ciphertext range of the covering segments (in the whole object's ciphertext).
    pub segments: Range<u64>,
    /// Index of the first covering segment within the part.
    pub first_segment: u64,
    /// Whether the last covering segment is the part's final segment.
    pub includes_final_segment: bool,
    /// Plaintext bytes to drop from the front of the first covering segment.
    pub skip: u64,
    /// Plaintext bytes this piece yields.
    pub len: u64,
}

/// The ciphertext to fetch for a plaintext range, per part: see [`ObjectLayout::plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePlan {
    pub(crate) segment_size: u32,
    pieces: Vec<PartRange>,
    plaintext_len: u64,
}

impl RangePlan {
    /// The pieces, one per part touched, in order.
    pub fn pieces(&self) -> &[PartRange] {
        &self.pieces
    }

    /// The ciphertext ranges to fetch, in order: each piece's header, then its segments.
    /// Decryption takes their concatenation.
    pub fn fetch_ranges(&self) -> Vec<Range<u64>> {
        self.pieces.iter().flat_map(|p| [p.header.clone(), p.segments.clone()]).collect()
    }

    /// Total bytes to fetch.
    pub fn fetch_len(&self) -> u64 {
        self.pieces.iter().map(|p| (p.header.end - p.header.start) + (p.segments.end - p.segments.start)).sum()
    }

    /// Plaintext bytes the range holds.
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for s in [16u32, 17, 64, 65536] {
            for len in [0u64, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 1000, 65535, 65536, 65537, 1 << 20] {
                let ct = ciphertext_len(len, s).unwrap();
                assert_eq!(plaintext_len(ct, s).unwrap(), len, "s={s} len={len}");
            }
        }
        assert_eq!(ciphertext_len(0, 64).unwrap(), H + T);
        assert_eq!(ciphertext_len(64, 64).unwrap(), H + 64 + T);
        assert_eq!(ciphertext_len(65, 64).unwrap(), H + 65 + 2 * T);
    }

    #[test]
    fn impossible_lengths_are_malformed() {
        let s = 64u32;
        for bad in [0, H - 1, H, H + T - 1, H + 64 + T + 1, H + 64 + T + T, H + 64 + T + 5] {
            assert_eq!(plaintext_len(bad, s), Err(CryptoError::Malformed), "{bad}");
        }
        assert_eq!(plaintext_len(1000, 1 << 30), Err(CryptoError::Malformed));
        let too_many = CryptoError::invalid("plaintext_len", "a stream holds at most 2^32 segments");
        assert_eq!(ciphertext_len(u64::MAX - 10, 1 << 22), Err(too_many));
        assert_eq!(ciphertext_len((1u64 << 32) * 16 + 1, 16), Err(too_many));
        assert_eq!(ciphertext_len((1u64 << 32) * 16, 16), Ok(H + (1u64 << 32) * (16 + T)));
    }

    #[test]
    fn plans_cover_exactly() {
        let layout = ObjectLayout::single(64, 200).unwrap();
        // Segments: [0,64) [64,128) [128,192) [192,200)
        let plan = layout.plan(70..130).unwrap();
        assert_eq!(plan.pieces().len(), 1);
        let p = &plan.pieces()[0];
        assert_eq!(p.header, 0..H);
        assert_eq!(p.first_segment, 1);
        assert_eq!(p.segments, H + 80..H + 3 * 80);
        assert!(!p.includes_final_segment);
        assert_eq!((p.skip, p.len), (6, 60));
        let tail = layout.plan(199..200).unwrap();
        assert_eq!(tail.pieces()[0].segments, H + 3 * 80..layout.ciphertext_len());
        assert!(tail.pieces()[0].includes_final_segment);
        assert!(layout.plan(0..0).unwrap().pieces().is_empty());
        assert!(matches!(layout.plan(0..201), Err(CryptoError::InvalidArgument { field: "range", .. })));
    }

    #[test]
    fn multipart_plans_span_parts() {
        let parts = vec![
            PartLayout { part: Part::number(1).unwrap(), plaintext_len: 100 },
            PartLayout { part: Part::number(2).unwrap(), plaintext_len: 0 },
            PartLayout { part: Part::number(5).unwrap(), plaintext_len: 50 },
        ];
        let layout = ObjectLayout::multipart(64, parts).unwrap();
        assert_eq!(layout.plaintext_len(), 150);
        let plan = layout.plan(90..110).unwrap();
        assert_eq!(plan.pieces().len(), 2);
        assert_eq!(plan.pieces()[0].part, Part::number(1).unwrap());
        assert_eq!(plan.pieces()[1].part, Part::number(5).unwrap());
        assert_eq!(plan.pieces()[1].header.start, layout.part_ciphertext_range(2).start);
        assert_eq!(plan.plaintext_len(), 20);
        assert_eq!(plan.fetch_ranges().len(), 4);

        let dup = vec![
            PartLayout { part: Part::number(2).unwrap(), plaintext_len: 1 },
            PartLayout { part: Part::number(2).unwrap(), plaintext_len: 1 },
        ];
        let not_increasing = CryptoError::invalid("parts", "part numbers must be positive and increasing");
        assert_eq!(ObjectLayout::multipart(64, dup).err(), Some(not_increasing));
        let whole = vec![PartLayout { part: Part::Whole, plaintext_len: 1 }];
        assert_eq!(ObjectLayout::multipart(64, whole).err(), Some(not_increasing));
        let none = CryptoError::invalid("parts", "a multipart object has at least one part");
        assert_eq!(ObjectLayout::multipart(64, vec![]).err(), Some(none));
    }
}
