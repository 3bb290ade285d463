//! What an operator meets in the first hour: a taken port, the first start's messages, a
//! refused token, the token rules, the cache figures, core dumps, and `kms config`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{KMS, free_port, kms, ok_json, serve, temp_dir};

#[test]
fn a_taken_port_fails_before_any_state_is_created_and_suggests_listen() {
    let first = temp_dir("busy-first");
    let port = free_port();
    let (server, banner) = serve(&first, port, &[]);
    assert!(banner.contains("master.key"), "the first start names the master key: {banner}");
    assert!(banner.contains("inside the data folder"), "the weak layout is warned about: {banner}");

    let second = temp_dir("busy-second");
    let out = Command::new(KMS)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(&second)
        .env_remove("KMS_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--listen"), "{stderr}");
    assert!(!second.join("kms-data").exists(), "a data folder was left behind: {stderr}");
    drop(server);
    let _ = std::fs::remove_dir_all(&first);
    let _ = std::fs::remove_dir_all(&second);
}

#[test]
fn a_refused_request_says_which_token_was_used_or_where_none_was_found() {
    let dir = temp_dir("401");
    let port = free_port();
    let (server, _) = serve(&dir, port, &[]);
    let elsewhere = temp_dir("401-elsewhere");
    let out = kms(&elsewhere, &server.url, &["key", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("no token was found"), "{stderr}");
    assert!(stderr.contains("KMS_TOKEN") && stderr.contains("kms-data/admin.token"), "{stderr}");
    assert!(stderr.contains(&*elsewhere.to_string_lossy()), "says where it looked: {stderr}");

    let out = kms(&elsewhere, &server.url, &["--token", "wrong", "key", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("refused the token from --token"), "{stderr}");

    // -v says where the token came from.
    let out = kms(&dir, &server.url, &["-v", "status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("token: the token file") && stderr.contains("admin.token"), "{stderr}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&elsewhere);
}

#[test]
fn the_local_admin_token_is_only_sent_to_a_loopback_url() {
    let dir = temp_dir("token-rules");
    std::fs::create_dir_all(dir.join("kms-data")).unwrap();
    std::fs::write(dir.join("kms-data/admin.token"), "kms_local_admin_secret\n").unwrap();
    // A name that never resolves: the command fails to connect, after saying what it sends.
    let out = kms(&dir, "http://kms.invalid:7373", &["-v", "status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("no token: ") && stderr.contains("only used with a loopback"), "{stderr}");
    assert!(!stderr.contains("plain http"), "no token is sent, so nothing to warn about: {stderr}");
    // Named explicitly, it is sent, with a warning about plain http.
    let out = kms(&dir, "http://kms.invalid:7373", &["-v", "--token-file", "kms-data/admin.token", "status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("token: the token file kms-data/admin.token"), "{stderr}");
    assert!(stderr.contains("plain http"), "{stderr}");
    assert!(!stderr.contains("kms_local_admin_secret"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cache_figures_are_those_the_docs_show() {
    let dir = temp_dir("cache");
    let (server, _) = serve(&dir, free_port(), &[]);
    ok_json(&dir, &server.url, &["key", "create", "--name", "app-1"]);
    for _ in 0..3 {
        ok_json(&dir, &server.url, &["datakey", "app-1", "--context", "bucket=photos"]);
    }
    ok_json(&dir, &server.url, &["key", "describe", "app-1"]);
    let status = ok_json(&dir, &server.url, &["status"]);
    // docs/http-api.md, "Status": the manager's metadata cache after exactly these calls.
    let documented = serde_json::json!({"hits": 0, "misses": 1, "entries": 1, "capacity": 1024});
    assert_eq!(status["cache"], documented);
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/http-api.md")).unwrap();
    assert!(docs.contains(r#""cache": {"hits": 0, "misses": 1, "entries": 1, "capacity": 1024}"#));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(target_os = "linux")]
#[test]
fn the_server_runs_without_core_dumps_unless_allowed() {
    let core_limit = |pid: u32| {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap().to_owned();
        line.split_whitespace().nth(4).unwrap().to_owned()
    };
    let dir = temp_dir("cores");
    let (server, _) = serve(&dir, free_port(), &[]);
    assert_eq!(core_limit(server.child.id()), "0");
    drop(server);
    let before = core_limit(std::process::id());
    let (server, _) = serve(&dir, free_port(), &["--allow-core-dumps"]);
    assert_eq!(core_limit(server.child.id()), before);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_config_example_passes_the_config_check() {
    let dir = temp_dir("config");
    let example = Command::new(KMS).args(["config", "example"]).output().unwrap();
    assert!(example.status.success());
    let mut check = Command::new(KMS)
        .args(["config", "check", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(&example.stdout).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "stdin: ok");

    let bad = dir.join("kms.toml");
    std::fs::write(&bad, "[server]\nmax_connections = 0\n").unwrap();
    let out = Command::new(KMS).args(["config", "check"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.max_connections"));
    std::fs::write(&bad, "[server]\nlisten = 7373\n").unwrap();
    let out = Command::new(KMS).args(["config", "check"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`server.listen`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // kms serve refuses the same file with the same message, before creating anything.
    let out = Command::new(KMS).args(["serve", "--config"]).arg(&bad).current_dir(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`server.listen`"));
    assert!(!dir.join("kms-data").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_truncated_file_fails_at_its_end_on_stdout_and_leaves_no_output_file() {
    let dir = temp_dir("truncated");
    let (server, _) = serve(&dir, free_port(), &[]);
    ok_json(&dir, &server.url, &["key", "create", "--name", "k"]);
    std::fs::write(dir.join("plain"), vec![7u8; 3 << 20]).unwrap();
    let out = kms(&dir, &server.url, &["encrypt", "--key", "k", "-i", "plain", "-o", "whole.kms"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let whole = std::fs::read(dir.join("whole.kms")).unwrap();
    std::fs::write(dir.join("cut.kms"), &whole[..whole.len() - 100]).unwrap();
    let out = kms(&dir, &server.url, &["decrypt", "-i", "cut.kms"]);
    assert_eq!(out.status.code(), Some(1), "a truncated input fails, if only at its end");
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated"));
    let out = kms(&dir, &server.url, &["decrypt", "-i", "cut.kms", "-o", "cut.out"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.join("cut.out").exists(), "-o FILE is all or nothing");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
