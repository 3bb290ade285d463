//! Tests that need more than one process: the crash tests (a child creating, rotating and
//! deleting keys is SIGKILLed at random moments, 20 rounds; a child with 64 concurrent
//! creators, whose changes share commits, 10 rounds) and the advisory lock against a second
//! process on the same key directory.
//!
//! This file is its own harness (`harness = false`): run without `KMS_LOCAL_CHILD` it is the
//! parent and runs the tests; the children are this same executable with `KMS_LOCAL_CHILD`
//! set to their role. A test-name argument runs only the tests whose names contain it.

// A child's stdout is its acknowledgement channel, and the parent reports like a test harness.
#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_backend_local::{LocalBackend, LocalOptions, ManualClock};
use kms_core::backends::KmsBackend;
use kms_types::config::{LocalConfig, MasterKeySource};
use kms_types::types::{
    CreateKeyRequest, DecryptRequest, DeleteKeyRequest, DescribeKeyRequest, GenerateDataKeyRequest, KeyIdRequest,
    KeySpec, KeyState, ListKeysRequest,
};

const ROLE_VAR: &str = "KMS_LOCAL_CHILD";
const DIR_VAR: &str = "KMS_LOCAL_CHILD_DIR";
const CRASH_ROUNDS: usize = 20;

fn config(dir: &Path) -> LocalConfig {
    LocalConfig::new(dir, MasterKeySource::Key { key: STANDARD.encode([7u8; 32]).into() })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    kms_crypto::rand::fill(&mut b).expect("random");
    u64::from_le_bytes(b)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() -> ExitCode {
    let dir = std::env::var_os(DIR_VAR).map(PathBuf::from);
    match (std::env::var(ROLE_VAR).as_deref(), dir) {
        (Ok("crash-loop"), Some(dir)) => runtime().block_on(child_crash_loop(&dir)),
        (Ok("group-loop"), Some(dir)) => runtime().block_on(child_group_loop(&dir)),
        (Ok("try-open"), Some(dir)) => runtime().block_on(child_try_open(&dir)),
        (Ok("hold"), Some(dir)) => runtime().block_on(child_hold(&dir)),
        (Ok(role), _) => panic!("unknown child role {role:?} or no {DIR_VAR}"),
        (Err(_), _) => return parent(),
    }
    ExitCode::SUCCESS
}

fn parent() -> ExitCode {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let tests: [(&str, fn()); 3] = [
        ("second_process_on_the_same_directory_is_refused", second_process_on_the_same_directory_is_refused),
        ("sigkill_at_random_moments_loses_no_acknowledged_operation", crash_rounds),
        ("sigkill_during_group_commits_loses_no_acknowledged_create", group_crash_rounds),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let started = Instant::now();
        match std::panic::catch_unwind(test) {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({:.1?})", started.elapsed());
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
    }
    println!("\ntest result: {}. {passed} passed; {failed} failed", if failed == 0 { "ok" } else { "FAILED" });
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn spawn_child(role: &str, dir: &Path) -> Child {
    Command::new(std::env::current_exe().expect("current exe"))
        .env(ROLE_VAR, role)
        .env(DIR_VAR, dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child")
}

/// Reads the child's stdout line by line on a thread; complete lines only.
fn line_reader(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

// ---------------------------------------------------------------------------------------------
// Second process

async fn child_try_open(dir: &Path) {
    match LocalBackend::open(&config(dir)).await {
        Ok(_) => println!("OK"),
        Err(e) => println!("ERR {e}"),
    }
}

async fn child_hold(dir: &Path) {
    let backend = LocalBackend::open(&config(dir)).await.expect("child opens the directory");
    println!("READY");
    // Hold the directory until the parent closes our stdin.
    let _ = std::io::stdin().read_line(&mut String::new());
    drop(backend);
}

fn second_process_on_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let rt = runtime();
    let backend = rt.block_on(LocalBackend::open(&config(&dir))).unwrap();

    let try_open = |dir: &Path| {
        let mut child = spawn_child("try-open", dir);
        let line = line_reader(&mut child).recv_timeout(Duration::from_secs(60)).expect("child answers");
        assert!(child.wait().unwrap().success());
        line
    };
    let line = try_open(&dir);
    assert!(line.starts_with("ERR ") && line.contains("in use by another kms process"), "{line}");

    rt.block_on(backend.shutdown());
    drop(backend);
    assert_eq!(try_open(&dir), "OK");

    // The other way round: a child holds the directory, this process is refused.
    let mut child = spawn_child("hold", &dir);
    let lines = line_reader(&mut child);
    assert_eq!(lines.recv_timeout(Duration::from_secs(60)).unwrap(), "READY");
    let err = rt.block_on(LocalBackend::open(&config(&dir))).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    rt.block_on(LocalBackend::open(&config(&dir))).expect("free again once the child is gone");
}

// ---------------------------------------------------------------------------------------------
// Crash test

/// The child: creates, rotates, makes data keys, schedules deletion and purges, forever,
/// printing one line per operation once it has returned (that is, once it is acknowledged).
async fn child_crash_loop(dir: &Path) {
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let backend =
        LocalBackend::open_with(&config(dir), LocalOptions::default().with_clock(clock.clone())).await.expect("open");
    let mut live: Vec<String> = Vec::new();
    let mut marker = None;
    loop {
        let page = backend
            .list_keys(ListKeysRequest { limit: Some(1000), marker: marker.take(), ..Default::default() })
            .await
            .unwrap();
        live.extend(page.keys.into_iter().filter(|e| e.key_state == KeyState::Enabled).map(|e| e.key_id));
        if !page.truncated {
            break;
        }
        marker = page.next_marker;
    }
    println!("READY");
    let pid = std::process::id();
    for i in 0u64.. {
        let pick = |n: usize| (random_u64() % n as u64) as usize;
        match random_u64() % 10 {
            0..=3 => {
                let key_id = format!("k-{pid}-{i}");
                backend
                    .create_key(CreateKeyRequest { key_name: Some(key_id.clone()), ..Default::default() })
                    .await
                    .unwrap();
                println!("CREATED {key_id}");
                live.push(key_id);
            }
            4 | 5 if !live.is_empty() => {
                let key_id = live[pick(live.len())].clone();
                let meta = backend.rotate_key(KeyIdRequest { key_id: key_id.clone() }).await.unwrap().key_metadata;
                println!("ROTATED {key_id} {}", meta.current_version);
            }
            6 | 7 if !live.is_empty() => {
                let key_id = live[pick(live.len())].clone();
                let dk = backend
                    .generate_data_key(GenerateDataKeyRequest {
                        key_id: key_id.clone(),
                        key_spec: KeySpec::Aes256,
                        encryption_context: [("round".to_owned(), pid.to_string())].into(),
                    })
                    .await
                    .unwrap();
                println!(
                    "DATAKEY {key_id} {pid} {} {}",
                    STANDARD.encode(&dk.ciphertext_blob),
                    hex(dk.plaintext_key.expose_secret())
                );
            }
            8 | 9 if !live.is_empty() => {
                let key_id = live.swap_remove(pick(live.len()));
                backend
                    .delete_key(DeleteKeyRequest { key_id: key_id.clone(), pending_window_in_days: Some(7) })
                    .await
                    .unwrap();
                println!("SCHEDULED {key_id}");
                clock.advance(Duration::from_secs(8 * 86_400));
                for purged in backend.purge_expired_keys().await.unwrap() {
                    println!("PURGED {purged}");
                }
            }
            _ => {}
        }
    }
}

#[derive(Debug, Default)]
struct KeyModel {
    /// The version the last acknowledged rotation reported (or 1).
    min_version: u32,
    /// Deletion was scheduled: the key may be PendingDeletion or gone.
    scheduled: bool,
    /// Acknowledged data keys: (context value, blob, plaintext hex).
    data_keys: Vec<(String, Vec<u8>, String)>,
}

fn crash_rounds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let rt = runtime();
    let mut model: BTreeMap<String, KeyModel> = BTreeMap::new();
    let mut purged: BTreeSet<String> = BTreeSet::new();
    let mut acked_ops = 0usize;
    for round in 0..CRASH_ROUNDS {
        let mut child = spawn_child("crash-loop", &dir);
        let lines = line_reader(&mut child);
        assert_eq!(lines.recv_timeout(Duration::from_secs(60)).expect("child starts"), "READY", "round {round}");
        std::thread::sleep(Duration::from_millis(5 + random_u64() % 150));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        // Every complete line the child printed before it died is an acknowledged operation.
        let acked: Vec<String> = lines.iter().collect();
        acked_ops += acked.len();
        for line in &acked {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["CREATED", id] => {
                    model.insert((*id).to_owned(), KeyModel { min_version: 1, ..Default::default() });
                }
                ["ROTATED", id, version] => {
                    model.get_mut(*id).expect("rotated a known key").min_version = version.parse().unwrap()
                }
                ["DATAKEY", id, context, blob, key] => model.get_mut(*id).expect("known key").data_keys.push((
                    (*context).to_owned(),
                    STANDARD.decode(blob).unwrap(),
                    (*key).to_owned(),
                )),
                ["SCHEDULED", id] => {
                    let key = model.get_mut(*id).expect("scheduled a known key");
                    key.scheduled = true;
                    key.data_keys.clear();
                }
                ["PURGED", id] => {
                    model.remove(*id);
                    purged.insert((*id).to_owned());
                }
                other => panic!("round {round}: unexpected child output {other:?}"),
            }
        }

        // The backend starts, no record is corrupt, and every acknowledged operation holds.
        let backend = rt.block_on(LocalBackend::open(&config(&dir))).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "round {round}: temp files left after start: {leftovers:?}");
        let listed: BTreeMap<String, KeyState> = rt
            .block_on(backend.list_keys(ListKeysRequest { limit: Some(1000), marker: None, ..Default::default() }))
            .unwrap()
            .keys
            .into_iter()
            .map(|e| (e.key_id, e.key_state))
            .collect();
        for (id, state) in &listed {
            assert_ne!(*state, KeyState::Unavailable, "round {round}: record of {id} is corrupt");
            assert!(!purged.contains(id), "round {round}: purged key {id} is back");
        }
        // The one operation in flight when the child died may or may not have happened: at
        // most one effect without an acknowledgement is allowed.
        let mut unacknowledged = Vec::new();
        for (id, key) in model.iter_mut() {
            let state = listed.get(id).copied();
            if key.scheduled {
                assert!(matches!(state, None | Some(KeyState::PendingDeletion)), "round {round}: {id} is {state:?}");
                continue;
            }
            match state {
                Some(KeyState::Enabled) => {}
                Some(KeyState::PendingDeletion) => {
                    unacknowledged.push(format!("scheduled {id}"));
                    key.scheduled = true;
                    key.data_keys.clear();
                    continue;
                }
                other => panic!("round {round}: acknowledged key {id} is {other:?}"),
            }
            let meta = rt.block_on(backend.describe_key(DescribeKeyRequest { key_id: id.clone() })).unwrap();
            let version = meta.key_metadata.current_version;
            assert!(
                version == key.min_version || version == key.min_version + 1,
                "round {round}: {id} at version {version} after an acknowledged rotation to {}",
                key.min_version
            );
            if version > key.min_version {
                unacknowledged.push(format!("rotated {id}"));
                key.min_version = version;
            }
            for (context, blob, plaintext) in &key.data_keys {
                let opened = rt
                    .block_on(backend.decrypt(DecryptRequest {
                        ciphertext_blob: blob.clone(),
                        encryption_context: [("round".to_owned(), context.clone())].into(),
                        key_id: Some(id.clone()),
                    }))
                    .unwrap_or_else(|e| panic!("round {round}: data key of {id} does not decrypt: {e}"));
                assert_eq!(&hex(opened.plaintext.expose_secret()), plaintext, "round {round}");
            }
        }
        // A key whose creation completed but whose acknowledgement was cut off is real too.
        for id in listed.keys() {
            if !model.contains_key(id) {
                unacknowledged.push(format!("created {id}"));
                model.insert(id.clone(), KeyModel { min_version: 1, ..Default::default() });
            }
        }
        assert!(
            unacknowledged.len() <= 1,
            "round {round}: more than the in-flight operation happened: {unacknowledged:?}"
        );
        model.retain(|id, key| !key.scheduled || listed.contains_key(id));
        rt.block_on(backend.shutdown());
    }
    let mut out = std::io::stdout();
    writeln!(
        out,
        "crash test: {CRASH_ROUNDS} rounds, {acked_ops} acknowledged operations, {} keys left, {} purged",
        model.len(),
        purged.len()
    )
    .unwrap();
    assert!(acked_ops > CRASH_ROUNDS, "the children did too little work to test anything");
}

// ---------------------------------------------------------------------------------------------
// Crash test of group commit

const GROUP_ROUNDS: usize = 10;
const GROUP_CALLERS: usize = 64;

/// The child: 64 tasks creating keys (and rotating every fourth) concurrently, so that many
/// changes share each commit; one line per acknowledged change.
async fn child_group_loop(dir: &Path) {
    let backend = Arc::new(LocalBackend::open(&config(dir)).await.expect("open"));
    println!("READY");
    let pid = std::process::id();
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..GROUP_CALLERS {
        let backend = backend.clone();
        tasks.spawn(async move {
            for i in 0u64.. {
                let key_id = format!("g-{pid}-{caller}-{i}");
                let request = CreateKeyRequest { key_name: Some(key_id.clone()), ..Default::default() };
                backend.create_key(request).await.unwrap();
                println!("CREATED {key_id}");
                if i % 4 == 3 {
                    let meta = backend.rotate_key(KeyIdRequest { key_id: key_id.clone() }).await.unwrap();
                    println!("ROTATED {key_id} {}", meta.key_metadata.current_version);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

fn group_crash_rounds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let rt = runtime();
    let mut acked: BTreeMap<String, u32> = BTreeMap::new();
    for round in 0..GROUP_ROUNDS {
        let mut child = spawn_child("group-loop", &dir);
        let lines = line_reader(&mut child);
        assert_eq!(lines.recv_timeout(Duration::from_secs(60)).expect("child starts"), "READY", "round {round}");
        std::thread::sleep(Duration::from_millis(50 + random_u64() % 250));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        for line in lines.iter() {
            match line.split(' ').collect::<Vec<_>>().as_slice() {
                ["CREATED", id] => {
                    acked.insert((*id).to_owned(), 1);
                }
                ["ROTATED", id, version] => {
                    acked.insert((*id).to_owned(), version.parse().unwrap());
                }
                other => panic!("round {round}: unexpected child output {other:?}"),
            }
        }
        let backend = rt.block_on(LocalBackend::open(&config(&dir))).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let mut listed = BTreeMap::new();
        let mut marker = None;
        loop {
            let page = rt
                .block_on(backend.list_keys(ListKeysRequest { limit: Some(1000), marker, ..Default::default() }))
                .unwrap();
            listed.extend(page.keys.into_iter().map(|e| (e.key_id, e.key_state)));
            if !page.truncated {
                break;
            }
            marker = page.next_marker;
        }
        // Nothing half-written is visible: every stored key opens.
        for (id, state) in &listed {
            assert_eq!(*state, KeyState::Enabled, "round {round}: {id}");
        }
        // No acknowledged change is lost.
        for (id, version) in &acked {
            assert!(listed.contains_key(id), "round {round}: acknowledged key {id} is lost");
            let meta = rt.block_on(backend.describe_key(DescribeKeyRequest { key_id: id.clone() })).unwrap();
            assert!(meta.key_metadata.current_version >= *version, "round {round}: rotation of {id} is lost");
        }
        // At most one change per caller was in flight without an acknowledgement.
        let unacknowledged = listed.keys().filter(|id| !acked.contains_key(*id)).count();
        assert!(unacknowledged <= GROUP_CALLERS, "round {round}: {unacknowledged} unacknowledged keys");
        acked.extend(
            listed.keys().map(|id| (id.clone(), 0)).filter(|(id, _)| !acked.contains_key(id)).collect::<Vec<_>>(),
        );
        rt.block_on(backend.shutdown());
    }
    println!("group crash test: {GROUP_ROUNDS} rounds, {} keys acknowledged and found", acked.len());
    assert!(acked.len() > GROUP_ROUNDS * GROUP_CALLERS, "the children did too little work to test anything");
}
