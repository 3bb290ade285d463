//! `cargo xtask bench crypto`: throughput of the streaming format against raw ring on the
//! same buffers (and against raw ring doing the one copy per segment a `Write`/`Read` adapter
//! cannot avoid), the whole-buffer APIs with a reused output (`encrypt_into_vec`,
//! `decrypt_into`) and with a fresh one per call, parallel speed-up beside what two threads of raw ring get, the fixed cost
//! of a small object, and peak memory of streaming 1 GiB.
//!
//! Every ratio is measured in this one process, so machine noise hits both sides alike.
//! Memory comes from fresh child processes that stream 1 GiB: peak resident set (VmHWM) and
//! anonymous resident set (heap and stack), minus those of a child that does everything but
//! the streaming.
#![allow(clippy::print_stdout)] // printing the figures is this binary's job

use std::hint::black_box;
use std::io::{self, Read, Write};
use std::num::NonZeroUsize;
use std::process::Command;
use std::time::{Duration, Instant};

use kms_crypto::aead::TAG_LEN;
use kms_crypto::keys::PlaintextDataKey;
use kms_crypto::stream::{
    self, DecryptingReader, EncryptingReader, EncryptingWriter, HEADER_LEN, Part, StreamOpener, StreamParams,
    StreamSealer,
};
use kms_types::types::{EncryptionContext, KeySpec};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

const OBJECT: usize = 256 << 20;
const STREAMED: u64 = 1 << 30;
const SEG: usize = stream::DEFAULT_SEGMENT_SIZE as usize;
const ROUNDS: usize = 5;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], args[i + 2].parse().expect("a byte count"));
        return;
    }
    let key = PlaintextDataKey::generate(KeySpec::Aes256).expect("random");
    let ctx: EncryptionContext = [("bucket".to_owned(), "bench".to_owned())].into();
    let raw = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[0x42; 32]).expect("key"));
    let params = StreamParams::default();
    let mut buf: Vec<u8> = (0..OBJECT).map(|i| (i * 7 + i / 4093) as u8).collect();
    let gbps = |d: Duration| OBJECT as f64 / d.as_secs_f64() / 1e9;

    println!(
        "kms-crypto stream bench: {} MiB object, {} KiB segments, AES-256-GCM, {ROUNDS} rounds",
        OBJECT >> 20,
        SEG >> 10
    );

    // --- encryption ---------------------------------------------------------------------
    // Each comparison alternates the two sides round by round, so load from other processes
    // on this shared machine hits both alike; the ratio is the median of the per-round ratios.
    let raw_seal = |buf: &mut [u8]| {
        timed(|| {
            let mut tags = 0u8;
            for (i, chunk) in buf.chunks_mut(SEG).enumerate() {
                let tag = raw.seal_in_place_separate_tag(nonce(i), Aad::empty(), chunk).unwrap();
                tags ^= tag.as_ref()[0];
            }
            black_box(tags);
        })
    };
    let segment_seal = |buf: &mut [u8]| {
        let mut sealer = StreamSealer::new(&key, &ctx, Part::Whole, params).unwrap();
        timed(|| {
            let count = buf.len().div_ceil(SEG);
            let mut tags = 0u8;
            for (i, chunk) in buf.chunks_mut(SEG).enumerate() {
                tags ^= sealer.seal_segment(chunk, i + 1 == count).unwrap()[0];
            }
            black_box(tags);
        })
    };
    let writer = |buf: &mut [u8]| {
        let mut w = EncryptingWriter::new(io::sink(), &key, &ctx, Part::Whole, params).unwrap();
        timed(|| {
            w.write_all(buf).unwrap();
            w.finish().unwrap();
        })
    };
    let out_buf =
        std::cell::RefCell::new(vec![0u8; stream::ciphertext_len(OBJECT as u64, SEG as u32).unwrap() as usize]);
    let encrypt_into = |buf: &mut [u8], threads: usize| {
        let threads = NonZeroUsize::new(threads).unwrap();
        let mut out = out_buf.borrow_mut();
        timed(|| stream::encrypt_into(&key, &ctx, Part::Whole, params, buf, &mut out, threads).unwrap())
    };

    println!("\nencrypt                                      GB/s   ours/raw (median of rounds)");
    let (raw_best, ours, ratio) = compare(&mut buf[..], raw_seal, segment_seal);
    println!("  raw ring seal_in_place_separate_tag       {:6.2}", gbps(raw_best));
    row("StreamSealer::seal_segment (in place)", gbps(ours), gbps(raw_best), ratio);
    let (raw_best, ours, ratio) = compare(&mut buf[..], raw_seal, writer);
    row("EncryptingWriter -> io::sink", gbps(ours), gbps(raw_best), ratio);
    let (raw_best, ours, ratio) = compare(&mut buf[..], raw_seal, |b: &mut [u8]| encrypt_into(b, 1));
    row("stream::encrypt_into, 1 thread", gbps(ours), gbps(raw_best), ratio);
    let (one, two, speedup) =
        compare(&mut buf[..], |b: &mut [u8]| encrypt_into(b, 1), |b: &mut [u8]| encrypt_into(b, 2));
    println!(
        "  stream::encrypt_into, 2 threads           {:6.2}   {speedup:.2}x one thread ({:.2} GB/s)",
        gbps(two),
        gbps(one)
    );
    drop(out_buf);
    // The whole-buffer APIs: into a caller's reused Vec, and allocating a fresh one per call.
    let mut sealed = Vec::new();
    let encrypt_into_vec = |buf: &mut [u8]| {
        timed(|| {
            stream::encrypt_into_vec(&key, &ctx, Part::Whole, params, buf, &mut sealed, NonZeroUsize::MIN).unwrap()
        })
    };
    let (_, ours, ratio) = compare(&mut buf[..], raw_seal, encrypt_into_vec);
    row("stream::encrypt_into_vec (reused Vec)", gbps(ours), gbps(raw_best), ratio);
    drop(sealed);
    let encrypt = |buf: &mut [u8]| timed(|| drop(black_box(stream::encrypt(&key, &ctx, Part::Whole, params, buf))));
    let (_, ours, ratio) = compare(&mut buf[..], raw_seal, encrypt);
    row("stream::encrypt (fresh output per call)", gbps(ours), gbps(raw_best), ratio);
    // What two threads can give on this machine right now (other processes share the cores).
    let (one, two, speedup) = compare(&mut buf[..], |b: &mut [u8]| raw_threads(b, 1), |b: &mut [u8]| raw_threads(b, 2));
    println!(
        "  raw ring, 2 threads (the ceiling)         {:6.2}   {speedup:.2}x one thread ({:.2} GB/s)",
        gbps(two),
        gbps(one)
    );
    // A writer is handed `&[u8]` and ring seals only in place: one copy per segment is the
    // least it can do. This is that floor, done with raw ring.
    let mut segment = vec![0u8; SEG];
    let raw_copy_seal = |buf: &mut [u8]| {
        timed(|| {
            let mut tags = 0u8;
            for (i, chunk) in buf.chunks(SEG).enumerate() {
                let work = &mut segment[..chunk.len()];
                work.copy_from_slice(chunk);
                tags ^= raw.seal_in_place_separate_tag(nonce(i), Aad::empty(), work).unwrap().as_ref()[0];
            }
            black_box(tags);
        })
    };
    let (floor_best, ours, ratio) = compare(&mut buf[..], raw_copy_seal, writer);
    println!("  floor for a writer: raw copy + seal       {:6.2}", gbps(floor_best));
    println!("  EncryptingWriter -> io::sink              {:6.2}   {ratio:.2} of the floor", gbps(ours));

    // --- decryption ---------------------------------------------------------------------
    let ct = stream::encrypt(&key, &ctx, Part::Whole, params, &buf).unwrap();
    let body = &ct[HEADER_LEN..];
    // The same layout sealed by raw ring (chunk ‖ tag), to open with raw ring.
    let raw_sealed: Vec<u8> = {
        let mut out = Vec::with_capacity(body.len());
        for (i, chunk) in buf.chunks(SEG).enumerate() {
            let start = out.len();
            out.extend_from_slice(chunk);
            let tag = raw.seal_in_place_separate_tag(nonce(i), Aad::empty(), &mut out[start..]).unwrap();
            out.extend_from_slice(tag.as_ref());
        }
        out
    };
    drop(buf);
    // Both open in place, so each round works on a fresh copy, made outside the timing.
    let raw_open = |work: &mut [u8]| {
        work.copy_from_slice(&raw_sealed);
        timed(|| {
            for (i, chunk) in work.chunks_mut(SEG + TAG_LEN).enumerate() {
                black_box(raw.open_in_place(nonce(i), Aad::empty(), chunk).unwrap());
            }
        })
    };
    let segment_open = |work: &mut [u8]| {
        work.copy_from_slice(body);
        timed(|| {
            let opener = StreamOpener::new(&key, &ctx, Part::Whole, &ct).unwrap();
            let count = work.len().div_ceil(SEG + TAG_LEN);
            for (i, chunk) in work.chunks_mut(SEG + TAG_LEN).enumerate() {
                black_box(opener.open_segment(i as u64, i + 1 == count, chunk).unwrap());
            }
        })
    };
    let mut read_buf = vec![0u8; 1 << 20];
    let mut reader = |_: &mut [u8]| {
        timed(|| {
            let mut r = DecryptingReader::new(&ct[..], &key, &ctx, Part::Whole);
            while r.read(&mut read_buf).unwrap() != 0 {}
        })
    };
    let mut work = vec![0u8; body.len()];
    println!("\ndecrypt                                      GB/s   ours/raw (median of rounds)");
    let (raw_best, ours, ratio) = compare(&mut work[..], raw_open, segment_open);
    println!("  raw ring open_in_place                    {:6.2}", gbps(raw_best));
    row("StreamOpener::open_segment (in place)", gbps(ours), gbps(raw_best), ratio);
    let (raw_best, ours, ratio) = compare(&mut work[..], raw_open, &mut reader);
    row("DecryptingReader, 1 MiB reads", gbps(ours), gbps(raw_best), ratio);
    // A reader copies each segment out of its input before opening it: the floor, in raw ring.
    let mut segment = vec![0u8; SEG + TAG_LEN];
    let raw_copy_open = |_: &mut [u8]| {
        timed(|| {
            for (i, chunk) in raw_sealed.chunks(SEG + TAG_LEN).enumerate() {
                let work = &mut segment[..chunk.len()];
                work.copy_from_slice(chunk);
                black_box(raw.open_in_place(nonce(i), Aad::empty(), work).unwrap());
            }
        })
    };
    let (floor_best, ours, ratio) = compare(&mut work[..], raw_copy_open, &mut reader);
    println!("  floor for a reader: raw copy + open       {:6.2}", gbps(floor_best));
    println!("  DecryptingReader, 1 MiB reads             {:6.2}   {ratio:.2} of the floor", gbps(ours));
    // The whole-buffer APIs: into a caller's reused buffer (one copy per segment, straight to
    // its place, opened there), and allocating a fresh output per call (zeroized on drop,
    // inside the timing).
    let mut opened = Zeroizing::new(Vec::new());
    let decrypt_into =
        |_: &mut [u8]| timed(|| stream::decrypt_into(&key, &ctx, Part::Whole, &ct, &mut opened).unwrap());
    let (raw_best, ours, ratio) = compare(&mut work[..], raw_open, decrypt_into);
    row("stream::decrypt_into (reused buffer)", gbps(ours), gbps(raw_best), ratio);
    drop(opened);
    let decrypt = |_: &mut [u8]| timed(|| drop(black_box(stream::decrypt(&key, &ctx, Part::Whole, &ct).unwrap())));
    let (raw_best, ours, ratio) = compare(&mut work[..], raw_open, decrypt);
    row("stream::decrypt (fresh output per call)", gbps(ours), gbps(raw_best), ratio);
    drop((ct, raw_sealed, work));

    small_objects(&key, &ctx, &raw);

    // --- memory -------------------------------------------------------------------------
    // Each figure comes from a fresh child process. Peak RSS (VmHWM) also counts code pages
    // faulted in on first use, so the anonymous RSS (heap, stack: RssAnon) is shown too,
    // sampled after the last byte while the stream objects are still alive.
    let (base_hwm, base_anon) = child_mem("baseline", 0);
    let limit = 4 * (SEG + TAG_LEN);
    println!(
        "\nmemory streaming {} GiB, growth over a child that streams nothing (budget 4 segments = {} KiB)",
        STREAMED >> 30,
        limit >> 10
    );
    for (what, mode) in
        [("EncryptingWriter -> sink", "encrypt"), ("EncryptingReader -> DecryptingReader -> sink", "pipeline")]
    {
        let (hwm, anon) = child_mem(mode, STREAMED);
        println!(
            "  {what:<46} peak RSS {:+5} KiB, anonymous RSS {:+5} KiB ({:.2} segments)",
            (hwm as i64 - base_hwm as i64) >> 10,
            (anon as i64 - base_anon as i64) >> 10,
            (anon as i64 - base_anon as i64) as f64 / SEG as f64
        );
    }
}

/// Raw ring sealing `buf` in place, its segments split over `threads` threads (the first
/// share on the calling thread, as `stream::encrypt_into` does).
fn raw_threads(buf: &mut [u8], threads: usize) -> Duration {
    let raw = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[0x42; 32]).expect("key"));
    let seal = |first: usize, part: &mut [u8]| {
        let mut tags = 0u8;
        for (i, chunk) in part.chunks_mut(SEG).enumerate() {
            tags ^= raw.seal_in_place_separate_tag(nonce(first + i), Aad::empty(), chunk).unwrap().as_ref()[0];
        }
        black_box(tags);
    };
    let share = buf.len().div_ceil(SEG).div_ceil(threads) * SEG;
    timed(|| {
        std::thread::scope(|scope| {
            let mut parts = buf.chunks_mut(share).enumerate();
            let (_, first) = parts.next().expect("a non-empty buffer");
            for (t, part) in parts {
                scope.spawn(move || seal(t * share / SEG, part));
            }
            seal(0, first);
        })
    })
}

/// Per-object cost of a small object (one 4 KiB segment) through each adapter: the fixed
/// costs of a stream (key derivation, buffers) rather than throughput.
fn small_objects(key: &PlaintextDataKey, ctx: &EncryptionContext, raw: &LessSafeKey) {
    const N: u32 = 20_000;
    let params = StreamParams::default();
    let object = vec![0x33u8; 4096];
    let sealed = stream::encrypt(key, ctx, Part::Whole, params, &object).unwrap();
    let mut out = Vec::with_capacity(2 * object.len());
    let mut read_buf = vec![0u8; 1 << 20];
    let mut per_object = |f: &mut dyn FnMut(&mut Vec<u8>, &mut [u8])| {
        let mut rounds: Vec<Duration> =
            (0..ROUNDS).map(|_| timed(|| (0..N).for_each(|_| f(&mut out, &mut read_buf))) / N).collect();
        rounds.sort();
        rounds[ROUNDS / 2]
    };
    let writer = per_object(&mut |out, _| {
        out.clear();
        let mut w = EncryptingWriter::new(out, key, ctx, Part::Whole, params).unwrap();
        w.write_all(&object).unwrap();
        w.finish().unwrap();
    });
    let enc_reader = per_object(&mut |out, _| {
        out.clear();
        EncryptingReader::new(&object[..], key, ctx, Part::Whole, params).unwrap().read_to_end(out).unwrap();
    });
    let dec_reader = per_object(&mut |_, read_buf| {
        let mut r = DecryptingReader::new(&sealed[..], key, ctx, Part::Whole);
        while r.read(read_buf).unwrap() != 0 {}
    });
    let raw_seal = per_object(&mut |out, _| {
        out.clear();
        out.extend_from_slice(&object);
        let tag = raw.seal_in_place_separate_tag(nonce(0), Aad::empty(), &mut out[..]).unwrap();
        out.extend_from_slice(tag.as_ref());
    });
    println!("\nsmall objects (4 KiB, one segment): time per object, median of {ROUNDS} rounds of {N}");
    println!("  EncryptingWriter -> Vec                   {writer:>8.2?}");
    println!("  EncryptingReader -> Vec                   {enc_reader:>8.2?}");
    println!("  DecryptingReader, 1 MiB reads             {dec_reader:>8.2?}");
    println!("  raw ring copy + seal of 4 KiB             {raw_seal:>8.2?}");
}

fn row(what: &str, ours: f64, raw: f64, ratio: f64) {
    println!("  {what:<41} {ours:6.2}   {ratio:.2}  (best/best {:.2})", ours / raw);
}

fn nonce(i: usize) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&(i as u64).to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// Runs `a` and `b` alternately `ROUNDS` times on `state`: (best of a, best of b, median of
/// the per-round ratios of b's speed to a's).
fn compare<T: ?Sized>(
    state: &mut T,
    mut a: impl FnMut(&mut T) -> Duration,
    mut b: impl FnMut(&mut T) -> Duration,
) -> (Duration, Duration, f64) {
    let mut ratios = Vec::new();
    let (mut best_a, mut best_b) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        let ta = a(state);
        let tb = b(state);
        best_a = best_a.min(ta);
        best_b = best_b.min(tb);
        ratios.push(ta.as_secs_f64() / tb.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    (best_a, best_b, ratios[ROUNDS / 2])
}

/// (peak RSS, anonymous RSS) in bytes of a child streaming `bytes` in `mode`.
fn child_mem(mode: &str, bytes: u64) -> (u64, u64) {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe).args(["--child", mode, &bytes.to_string()]).output().expect("child runs");
    assert!(out.status.success(), "child {mode} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().expect("a byte count"));
    (fields.next().expect("peak"), fields.next().expect("anon"))
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a /proc/self/status field")
}

/// Streams `bytes` in a fresh process and prints its peak resident set in bytes.
fn child(mode: &str, bytes: u64) {
    let key = PlaintextDataKey::generate(KeySpec::Aes256).unwrap();
    let ctx: EncryptionContext = [("bucket".to_owned(), "bench".to_owned())].into();
    let params = StreamParams::default();
    let source = || io::repeat(0x5A).take(bytes);
    // Touched in every mode, so the baseline includes it.
    let mut copy_buf = vec![1u8; 1 << 20];
    let mut pump = |r: &mut dyn Read, w: &mut dyn Write| -> u64 {
        let mut total = 0;
        loop {
            let n = r.read(&mut copy_buf).unwrap();
            if n == 0 {
                return total;
            }
            w.write_all(&copy_buf[..n]).unwrap();
            total += n as u64;
        }
    };
    let anon = match mode {
        // Everything but the stream: the key, the context, the copy buffer.
        "baseline" => {
            pump(&mut io::repeat(0).take(1 << 20), &mut io::sink());
            status_kib("RssAnon:")
        }
        "encrypt" => {
            let mut w = EncryptingWriter::new(io::sink(), &key, &ctx, Part::Whole, params).unwrap();
            assert_eq!(pump(&mut source(), &mut w), bytes);
            let anon = status_kib("RssAnon:");
            w.finish().unwrap();
            anon
        }
        "pipeline" => {
            let enc = EncryptingReader::new(source(), &key, &ctx, Part::Whole, params).unwrap();
            let mut dec = DecryptingReader::new(enc, &key, &ctx, Part::Whole);
            assert_eq!(pump(&mut dec, &mut io::sink()), bytes);
            status_kib("RssAnon:")
        }
        other => panic!("unknown child mode {other}"),
    };
    println!("{} {}", status_kib("VmHWM:") * 1024, anon * 1024);
}
