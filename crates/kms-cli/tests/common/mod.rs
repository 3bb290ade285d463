//! Running `kms serve` as a child process and the client commands against it.
#![allow(dead_code, unreachable_pub)]

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const KMS: &str = env!("CARGO_BIN_EXE_kms");

/// A `kms serve` process; dropping it sends SIGTERM, then kills it if it lingers.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    /// Sends SIGTERM and waits (at most 30 s) for the process to exit.
    pub fn terminate(&mut self) -> bool {
        if self.child.try_wait().ok().flatten().is_some() {
            return true;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.terminate() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kms-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts `kms serve --listen 127.0.0.1:PORT EXTRA...` in `dir`; returns the server and what
/// it printed up to "listening on".
pub fn serve(dir: &Path, port: u16, extra: &[&str]) -> (Server, String) {
    let mut child = Command::new(KMS)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .current_dir(dir)
        .env_remove("KMS_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let server = Server { child, url: format!("http://127.0.0.1:{port}") };
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 256];
    while !seen.contains("listening on") {
        assert!(Instant::now() < deadline, "server did not start: {seen}");
        let n = stderr.read(&mut buf).unwrap();
        assert!(n > 0, "server exited: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
    });
    (server, seen)
}

/// Runs a client command in `dir` against `url` (token from ./kms-data/admin.token).
pub fn kms(dir: &Path, url: &str, args: &[&str]) -> Output {
    Command::new(KMS)
        .arg("--url")
        .arg(url)
        .args(args)
        .current_dir(dir)
        .env_remove("KMS_TOKEN")
        .env_remove("KMS_TOKEN_FILE")
        .env_remove("KMS_URL")
        .output()
        .unwrap()
}

/// Runs a client command with `--json` and returns its output; panics on failure.
pub fn ok_json(dir: &Path, url: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = kms(dir, url, &all);
    assert!(out.status.success(), "kms {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("kms {args:?}: {e}: {:?}", out.stdout))
}

/// Runs a client command; panics on failure.
pub fn ok(dir: &Path, url: &str, args: &[&str]) {
    let out = kms(dir, url, args);
    assert!(out.status.success(), "kms {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}
