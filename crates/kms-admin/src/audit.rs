//! The audit log: one JSON line per request.
//!
//! A line holds when, who, what, on which key, how it ended and how long it took:
//! `{"time":"2026-01-02T03:04:05.123Z","identity":"app","operation":"generate_data_key",
//! "key_id":"app-1","status":200,"outcome":"ok","latency_us":183,"remote":"127.0.0.1:50312"}`.
//! It never holds plaintext, key material, tokens or encryption-context values: the type has
//! no field that could carry them.
//!
//! Lines are handed to a writer thread through a channel and written in batches, so a request
//! never waits on the disk; the writer flushes whenever the channel runs dry and on shutdown.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

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

/// Where audit lines go.
#[derive(Debug)]
pub struct AuditLog {
    sender: Option<mpsc::Sender<AuditRecord>>,
    writer: Option<JoinHandle<()>>,
}

impl AuditLog {
    /// No audit log.
    pub fn disabled() -> Self {
        Self { sender: None, writer: None }
    }

    /// Appends to `path` (created with mode 0600), opened without following a symbolic link;
    /// an existing file must be owned by this user and writable by nobody else
    /// ([`kms_core::fs_trust::open_append_private`]).
    pub fn to_file(path: &Path) -> io::Result<Self> {
        let file = kms_core::fs_trust::open_append_private(path).map_err(|e| match e {
            kms_core::fs_trust::TrustError::Io { source, .. } => source,
            other => io::Error::new(io::ErrorKind::PermissionDenied, other.to_string()),
        })?;
        Ok(Self::to_writer(Box::new(file)))
    }

    /// Writes to any sink (stderr, a buffer in tests).
    pub fn to_writer(sink: Box<dyn Write + Send>) -> Self {
        let (sender, receiver) = mpsc::channel::<AuditRecord>();
        let writer = std::thread::Builder::new()
            .name("kms-audit".into())
            .spawn(move || write_loop(receiver, sink))
            .expect("spawning the audit writer thread");
        Self { sender: Some(sender), writer: Some(writer) }
    }

    /// Whether records are kept.
    pub fn is_enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Queues a record.
    pub fn record(&self, record: AuditRecord) {
        if let Some(sender) = &self.sender {
            // The writer only goes away at shutdown; a record racing it has nowhere to go.
            let _ = sender.send(record);
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

fn write_loop(receiver: mpsc::Receiver<AuditRecord>, sink: Box<dyn Write + Send>) {
    let mut out = io::BufWriter::with_capacity(64 * 1024, sink);
    while let Ok(first) = receiver.recv() {
        let mut next = Some(first);
        while let Some(record) = next {
            if serde_json::to_writer(&mut out, &record).is_ok() {
                let _ = out.write_all(b"\n");
            }
            next = receiver.try_recv().ok();
        }
        if let Err(err) = out.flush() {
            tracing::error!(error = %err, "cannot write the audit log");
        }
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn records_become_one_json_line_each() {
        let shared = Shared::default();
        let log = AuditLog::to_writer(Box::new(shared.clone()));
        for i in 0..3u16 {
            log.record(AuditRecord {
                time: AuditRecord::now(),
                identity: Some("app".into()),
                operation: Some("decrypt"),
                key_id: Some(format!("k{i}")),
                status: 200 + i,
                outcome: "ok",
                latency_us: 10,
                remote: Some("127.0.0.1:9".parse().unwrap()),
            });
        }
        drop(log);
        let text = String::from_utf8(shared.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2]["key_id"], "k2");
        assert_eq!(lines[0]["operation"], "decrypt");
        assert_eq!(lines[0]["remote"], "127.0.0.1:9");
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
    }
}
