//! The high-availability run and benchmark, driven by `cargo xtask ha` and
//! `cargo xtask bench ha`, which start a 3-node OpenBao Raft cluster and two `kms serve`
//! processes on loopback and hand their addresses over in the environment:
//!
//! - `KMS_HA_URLS`, `KMS_HA_TOKENS`, `KMS_HA_KMS_PIDS`: the kms servers, their admin tokens
//!   and process ids (same order);
//! - `KMS_HA_BAO_ADDRS`, `KMS_HA_BAO_PIDS`: the OpenBao nodes and their process ids;
//! - `KMS_HA_MODE`: `run` (load, leader killed, checks; `KMS_HA_SECONDS` long) or `bench`;
//! - `KMS_HA_RECONFIGURE`: for `bench`, the server's configure body as JSON, to switch the
//!   coherence bound.
//!
//! `run` asserts 0 failed client operations (clients never retry: the servers do), that every
//! data key and ciphertext decrypts afterwards, that no key is lost or duplicated, and that a
//! disable through one server is refused by the other within the coherence bound; then kills
//! one kms server and shows the other keeps serving. It prints counts and the longest stall.

mod client;

use std::process::ExitCode;

fn main() -> ExitCode {
    let Ok(mode) = std::env::var("KMS_HA_MODE") else {
        eprintln!("ha: run me through `cargo xtask ha` or `cargo xtask bench ha` (they start the cluster)");
        return ExitCode::FAILURE;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let result = match mode.as_str() {
        "run" => runtime.block_on(client::run()),
        "bench" => runtime.block_on(client::bench()),
        other => Err(format!("unknown KMS_HA_MODE `{other}`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ha: FAILED: {message}");
            ExitCode::FAILURE
        }
    }
}
