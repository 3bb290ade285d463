//! The audit log: one JSON line per request.
//!
//! A line holds when, who, what, on which key, how it ended and how long it took:
//! `{"time":"2026-01-02T03:04:05.123Z","identity":"app","operation":"generate_data_key",
//! "key_id":"app-1","key_version":3,"context_sha256":"5c1f…","status":200,"outcome":"ok",
//! "latency_us":183,"remote":"127.0.0.1:50312"}`. Data-key, encrypt, decrypt and re-encrypt
//! lines carry the key version used and the SHA-256 (hex) of the canonical encoding of the
//! encryption context (`docs/formats.md`), so two requests over the same context can be matched
//! without the log holding its values. A line never holds plaintext, key material, tokens or
//! encryption-context values: the type has no field that could carry them.
//!
//! Lines go to a writer thread through a **bounded** queue: a request reserves its slot before
//! it is dispatched ([`AuditLog::reserve`]) and fills it after. The writer writes each batch,
//! flushes it, and calls `sync_data` on the file at most every `sync_interval` (and when the
//! queue goes idle, and at shutdown), so at most that much of the log is lost in a power cut.
//!
//! After each batch the writer waits `batch_window` (1 ms) before it takes the next: lines
//! queued meanwhile cost their request a lock-free push and no wake-up of the writer thread,
//! and the file one `write` per window instead of one per request. Handing every line to the
//! writer at once cost a thread wake-up (futex, context switch) per request, more than the rest
//! of the audit path together (`docs/performance.md`). A line thus reaches the file at most
//! `batch_window` after its request is answered (plus the `sync_interval` to reach the disk).
//!
//! When the sink fails (a full disk, a revoked mount) or the queue is full, the log either
//! **fails open** (the default: requests go on, the lost lines are counted in
//! [`AuditLog::dropped`] and logged), or, with `fail_closed`, **fails closed**: every request
//! that reaches dispatch is refused with 503 `audit_unavailable` until a write succeeds again.

use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One audit record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// When the request arrived (RFC 3339, UTC).
    pub time: String,
    /// The authenticated identity, `null` when authentication failed.
    pub identity: Option<String>,
    /// The operation name, `null` for an unknown route.
    pub operation: Option<&'static str>,
    /// The key the request named or acted on.
    pub key_id: Option<String>,
    /// The key version that sealed or opened the data (data-key, encrypt, decrypt, re-encrypt:
    /// the destination version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_version: Option<u32>,
    /// SHA-256 (hex) of the canonical encryption context of a data-key, encrypt, decrypt or
    /// re-encrypt request (re-encrypt: the source context). Never the context itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_sha256: Option<String>,
    /// The HTTP status.
    pub status: u16,
    /// `ok` or the error code.
    pub outcome: &'static str,
    /// Time from request arrival to response, in microseconds.
    pub latency_us: u64,
    /// The peer address.
    pub remote: Option<SocketAddr>,
}

impl AuditRecord {
    /// The current time in the record's format.
    pub fn now() -> String {
        OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()
    }
}

/// How the audit log behaves (from the `[server]` configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditOptions {
    /// Most records waiting for the writer.
    pub queue_capacity: usize,
    /// Longest time between two `sync_data` calls while lines are written.
    pub sync_interval: Duration,
    /// Refuse requests while the sink fails or the queue is full.
    pub fail_closed: bool,
    /// How long the writer lets lines gather after writing a batch (zero: it takes every
    /// line as soon as it is queued, waking once per request under load).
    pub batch_window: Duration,
}

/// The default [`AuditOptions::batch_window`].
pub const DEFAULT_BATCH_WINDOW: Duration = Duration::from_millis(1);

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            sync_interval: Duration::from_secs(1),
            fail_closed: false,
            batch_window: DEFAULT_BATCH_WINDOW,
        }
    }
}

/// Where the writer thread puts lines.
enum Sink {
    /// A file: synced with `sync_data`.
    File(File),
    /// Anything else (stderr, a buffer in tests): flushed only.
    Writer(Box<dyn Write + Send>),
}

impl Sink {
    /// Writes as much of `pending` as the sink takes, removing what was written (so a retry
    /// after a failure neither loses nor repeats bytes).
    fn write_from(&mut self, pending: &mut Vec<u8>) -> io::Result<()> {
        let out: &mut dyn Write = match self {
            Self::File(f) => f,
            Self::Writer(w) => w,
        };
        while !pending.is_empty() {
            match out.write(pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => drop(pending.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        out.flush()
    }

    fn sync(&mut self) -> io::Result<()> {
        match self {
            Self::File(f) => f.sync_data(),
            Self::Writer(w) => w.flush(),
        }
    }
}

/// State shared by the request side and the writer thread.
#[derive(Debug)]
struct Shared {
    /// Slots reserved or queued, at most `capacity`.
    used: AtomicUsize,
    capacity: usize,
    /// False from a failed write or sync until the next one that succeeds.
    healthy: AtomicBool,
    /// Records lost: not queued (full) or not written (sink failure).
    dropped: AtomicU64,
}

/// A reserved place in the audit queue: [`AuditSlot::send`] fills it; dropping it unused
/// gives it back.
#[derive(Debug)]
pub struct AuditSlot {
    shared: Arc<Shared>,
    sender: mpsc::Sender<AuditRecord>,
    sent: bool,
}

impl AuditSlot {
    /// Queues `record` in this slot.
    pub fn send(mut self, record: AuditRecord) {
        // The writer only goes away at shutdown; a record racing it has nowhere to go.
        if self.sender.send(record).is_ok() {
            self.sent = true;
        } else {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for AuditSlot {
    fn drop(&mut self) {
        if !self.sent {
            self.shared.used.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// What [`AuditLog::reserve`] decided.
#[derive(Debug)]
pub enum Reservation {
    /// The log is off.
    Disabled,
    /// A slot to fill once the request is answered.
    Slot(AuditSlot),
    /// No slot (queue full or sink failing) and the log fails open: serve, and count the line
    /// as dropped.
    Dropped,
    /// No slot and the log fails closed: refuse the request.
    Refuse,
}

impl Reservation {
    /// The request's arrival time for its audit line ([`AuditRecord::now`]), read and
    /// formatted only when a line will be written; empty otherwise.
    pub(crate) fn arrival_time(&self) -> String {
        if matches!(self, Self::Slot(_)) { AuditRecord::now() } else { String::new() }
    }
}

/// Where audit lines go.
#[derive(Debug)]
pub struct AuditLog {
    sender: Option<mpsc::Sender<AuditRecord>>,
    shared: Arc<Shared>,
    fail_closed: bool,
    writer: Option<JoinHandle<()>>,
}

impl AuditLog {
    /// No audit log.
    pub fn disabled() -> Self {
        Self { sender: None, shared: Arc::new(Shared::new(0)), fail_closed: false, writer: None }
    }

    /// Appends to `path` (created with mode 0600), opened without following a symbolic link;
    /// an existing file must be owned by this user (or root) and writable by nobody else
    /// ([`kms_core::fs_trust::open_append_private`]).
    pub fn to_file(path: &Path, options: AuditOptions) -> io::Result<Self> {
        let file = kms_core::fs_trust::open_append_private(path).map_err(|e| match e {
            kms_core::fs_trust::TrustError::Io { source, .. } => source,
            other => io::Error::new(io::ErrorKind::PermissionDenied, other.to_string()),
        })?;
        Ok(Self::start(Sink::File(file), options))
    }

    /// Writes to any sink (stderr, a buffer in tests); flushed after every batch.
    pub fn to_writer(sink: Box<dyn Write + Send>, options: AuditOptions) -> Self {
        Self::start(Sink::Writer(sink), options)
    }

    fn start(sink: Sink, options: AuditOptions) -> Self {
        let (sender, receiver) = mpsc::channel::<AuditRecord>();
        let shared = Arc::new(Shared::new(options.queue_capacity.max(1)));
        let for_writer = shared.clone();
        let writer = std::thread::Builder::new()
            .name("kms-audit".into())
            .spawn(move || write_loop(&receiver, sink, &for_writer, options))
            .expect("spawning the audit writer thread");
        Self { sender: Some(sender), shared, fail_closed: options.fail_closed, writer: Some(writer) }
    }

    /// Whether records are kept.
    pub fn is_enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Whether the last write to the sink succeeded.
    pub fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire)
    }

    /// Records lost so far (queue full, or the sink failed).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Reserves the queue slot of one request's line, before the request is served.
    pub fn reserve(&self) -> Reservation {
        let Some(sender) = &self.sender else { return Reservation::Disabled };
        let available = (self.is_healthy() || !self.fail_closed) && self.shared.try_take_slot();
        match (available, self.fail_closed) {
            (true, _) => {
                Reservation::Slot(AuditSlot { shared: self.shared.clone(), sender: sender.clone(), sent: false })
            }
            (false, true) => Reservation::Refuse,
            (false, false) => {
                let lost = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if lost.is_power_of_two() {
                    tracing::error!(lost, "the audit queue is full: audit lines are being dropped");
                }
                Reservation::Dropped
            }
        }
    }
}

impl Shared {
    fn new(capacity: usize) -> Self {
        Self { used: AtomicUsize::new(0), capacity, healthy: AtomicBool::new(true), dropped: AtomicU64::new(0) }
    }

    fn try_take_slot(&self) -> bool {
        self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.capacity).then_some(n + 1)).is_ok()
    }

    /// Notes the outcome of a write or sync: a failure marks the log unhealthy until the next
    /// success.
    fn note(&self, result: io::Result<()>) -> bool {
        match result {
            Ok(()) => {
                if !self.healthy.swap(true, Ordering::AcqRel) {
                    tracing::warn!("the audit log is writable again");
                }
                true
            }
            Err(err) => {
                if self.healthy.swap(false, Ordering::AcqRel) {
                    tracing::error!(error = %err, "cannot write the audit log");
                }
                false
            }
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Most bytes of lines kept for a retry while the sink fails; lines beyond are dropped.
const MAX_PENDING_BYTES: usize = 4 << 20;

fn write_loop(receiver: &mpsc::Receiver<AuditRecord>, mut sink: Sink, shared: &Shared, options: AuditOptions) {
    let interval = options.sync_interval;
    // Lines not yet written: after a failure they stay here and are retried (at the next
    // batch, or after `interval` when the queue is idle), so a sink that comes back loses none.
    let mut pending: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut last_sync = Instant::now();
    let mut dirty = false;
    loop {
        let idle = match receiver.recv_timeout(interval) {
            Ok(first) => {
                let mut next = Some(first);
                while let Some(record) = next {
                    shared.used.fetch_sub(1, Ordering::AcqRel);
                    if pending.len() < MAX_PENDING_BYTES && serde_json::to_writer(&mut pending, &record).is_ok() {
                        pending.push(b'\n');
                    } else {
                        shared.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    next = receiver.try_recv().ok();
                }
                false
            }
            Err(mpsc::RecvTimeoutError::Timeout) => true,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if !pending.is_empty() && shared.note(sink.write_from(&mut pending)) {
            dirty = true;
        }
        if dirty && (idle || last_sync.elapsed() >= interval) && shared.note(sink.sync()) {
            dirty = false;
            last_sync = Instant::now();
        }
        // Let the next lines gather while this thread sleeps rather than waits on the queue:
        // a request that queues a line then wakes nobody. After an empty window the next
        // `recv_timeout` blocks, and the first line after the pause wakes the writer.
        if !idle && !options.batch_window.is_zero() {
            std::thread::sleep(options.batch_window);
        }
    }
    if !pending.is_empty() && !shared.note(sink.write_from(&mut pending)) {
        let lost = pending.iter().filter(|&&b| b == b'\n').count() as u64;
        shared.dropped.fetch_add(lost, Ordering::Relaxed);
    }
    shared.note(sink.sync());
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A sink that fails while `failing` is set and counts flushes (its `sync`).
    #[derive(Clone, Default)]
    struct Flaky {
        data: Arc<Mutex<Vec<u8>>>,
        failing: Arc<AtomicBool>,
        flushes: Arc<AtomicUsize>,
    }

    impl Write for Flaky {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(io::Error::other("disk full"));
            }
            self.data.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.flushes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    impl Flaky {
        fn lines(&self) -> Vec<serde_json::Value> {
            let text = String::from_utf8(self.data.lock().unwrap().clone()).unwrap();
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
        }
    }

    fn record(key: &str) -> AuditRecord {
        AuditRecord {
            time: AuditRecord::now(),
            identity: Some("app".into()),
            operation: Some("decrypt"),
            key_id: Some(key.into()),
            key_version: Some(3),
            context_sha256: Some("ab".repeat(32)),
            status: 200,
            outcome: "ok",
            latency_us: 10,
            remote: Some("127.0.0.1:9".parse().unwrap()),
        }
    }

    fn send(log: &AuditLog, key: &str) {
        match log.reserve() {
            Reservation::Slot(slot) => slot.send(record(key)),
            other => panic!("no slot: {other:?}"),
        }
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    const FAST: AuditOptions = AuditOptions {
        queue_capacity: 16,
        sync_interval: Duration::from_millis(50),
        fail_closed: false,
        batch_window: DEFAULT_BATCH_WINDOW,
    };

    #[test]
    fn records_become_one_json_line_each_with_version_and_context_digest() {
        let sink = Flaky::default();
        let log = AuditLog::to_writer(Box::new(sink.clone()), AuditOptions::default());
        for i in 0..3 {
            send(&log, &format!("k{i}"));
        }
        drop(log);
        let lines = sink.lines();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2]["key_id"], "k2");
        assert_eq!(lines[0]["operation"], "decrypt");
        assert_eq!(lines[0]["key_version"], 3);
        assert_eq!(lines[0]["context_sha256"], "ab".repeat(32));
        assert_eq!(lines[0]["remote"], "127.0.0.1:9");
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn the_queue_is_bounded_and_a_full_queue_drops_lines_when_failing_open() {
        let log = AuditLog::to_writer(Box::new(Flaky::default()), AuditOptions { queue_capacity: 2, ..FAST });
        let a = log.reserve();
        let b = log.reserve();
        assert!(matches!((&a, &b), (Reservation::Slot(_), Reservation::Slot(_))));
        assert!(matches!(log.reserve(), Reservation::Dropped));
        assert_eq!(log.dropped(), 1);
        drop(a); // an unused slot is given back
        assert!(matches!(log.reserve(), Reservation::Slot(_)));
    }

    #[test]
    fn a_full_queue_refuses_requests_when_failing_closed() {
        let options = AuditOptions { queue_capacity: 1, fail_closed: true, ..FAST };
        let log = AuditLog::to_writer(Box::new(Flaky::default()), options);
        let _held = log.reserve();
        assert!(matches!(log.reserve(), Reservation::Refuse));
    }

    #[test]
    fn a_failing_sink_refuses_requests_when_failing_closed_until_it_recovers_without_losing_lines() {
        let sink = Flaky::default();
        let log = AuditLog::to_writer(Box::new(sink.clone()), AuditOptions { fail_closed: true, ..FAST });
        sink.failing.store(true, Ordering::SeqCst);
        send(&log, "lost-for-now");
        wait_until("the failure to be noticed", || !log.is_healthy());
        assert!(matches!(log.reserve(), Reservation::Refuse));
        sink.failing.store(false, Ordering::SeqCst);
        wait_until("the retry to succeed", || log.is_healthy());
        assert!(matches!(log.reserve(), Reservation::Slot(_)));
        drop(log);
        assert_eq!(sink.lines()[0]["key_id"], "lost-for-now", "the line was kept and retried");
    }

    #[test]
    fn a_failing_sink_does_not_stop_requests_by_default() {
        let sink = Flaky::default();
        let log = AuditLog::to_writer(Box::new(sink.clone()), FAST);
        sink.failing.store(true, Ordering::SeqCst);
        send(&log, "k");
        wait_until("the failure to be noticed", || !log.is_healthy());
        assert!(matches!(log.reserve(), Reservation::Slot(_)));
    }

    #[test]
    fn written_lines_are_synced_periodically_even_when_the_queue_goes_idle() {
        let sink = Flaky::default();
        let log = AuditLog::to_writer(Box::new(sink.clone()), FAST);
        send(&log, "k");
        // One flush after the write, one sync once the queue has been idle for the interval.
        wait_until("the idle sync", || sink.flushes.load(Ordering::SeqCst) >= 2);
        let flushes = sink.flushes.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(sink.flushes.load(Ordering::SeqCst), flushes, "nothing new written: no more syncs");
        drop(log);
    }

    #[test]
    fn lines_queued_while_the_writer_waits_out_its_window_are_written_as_one_batch() {
        let sink = Flaky::default();
        // A long sync interval: the only flushes are the batches' own.
        let options = AuditOptions {
            sync_interval: Duration::from_secs(60),
            batch_window: Duration::from_secs(1),
            ..AuditOptions::default()
        };
        let log = AuditLog::to_writer(Box::new(sink.clone()), options);
        send(&log, "first");
        wait_until("the first batch", || sink.flushes.load(Ordering::SeqCst) == 1);
        assert_eq!(sink.lines().len(), 1);
        // The writer now sleeps out its window: these wake nobody and go out together.
        for i in 0..10 {
            send(&log, &format!("k{i}"));
        }
        wait_until("the second batch", || sink.flushes.load(Ordering::SeqCst) >= 2);
        assert_eq!(sink.lines().len(), 11, "ten lines, one write and flush");
        assert_eq!(sink.flushes.load(Ordering::SeqCst), 2);
        assert_eq!(sink.lines()[10]["key_id"], "k9", "in order");
        drop(log);
    }

    #[test]
    fn disabled_logs_reserve_nothing() {
        assert!(matches!(AuditLog::disabled().reserve(), Reservation::Disabled));
    }
}
