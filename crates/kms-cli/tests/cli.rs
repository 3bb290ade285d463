//! Drives `kms serve` and the client commands as a user would: a real server process on a
//! loopback port, the admin token from the data folder, keys, data keys, exit codes,
//! encrypt/decrypt of a file over 100 MiB with a ranged decrypt, and a restart that keeps keys
//! and configuration.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{KMS, free_port, kms, ok_json, serve, temp_dir};

fn sha256_file(path: &Path) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    ctx.finish().as_ref().to_vec()
}

#[test]
fn a_user_session_with_kms_serve_and_the_client() {
    let dir = temp_dir("session");
    let port = free_port();
    let data_dir = dir.join("kms-data");
    let (server, banner) = serve(&dir, port, &["--data-dir", data_dir.to_str().unwrap()]);
    let url = server.url.clone();

    // The token is in a 0600 file in the data folder, and never printed.
    let token_path = dir.join("kms-data/admin.token");
    let token = std::fs::read_to_string(&token_path).unwrap().trim().to_owned();
    assert!(banner.contains("admin.token"), "{banner}");
    assert!(!banner.contains(&token), "the token was printed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // Client commands find the token at ./kms-data/admin.token.
    let status = ok_json(&dir, &url, &["status"]);
    assert_eq!(status["status"]["state"], "running");
    assert_eq!(status["backend"], "local");

    let created =
        ok_json(&dir, &url, &["key", "create", "--name", "app-1", "--description", "first", "--tag", "team=a"]);
    assert_eq!(created["key_id"], "app-1");
    ok_json(&dir, &url, &["key", "create", "--name", "app-2"]);
    let listed = ok_json(&dir, &url, &["key", "list", "--limit", "1", "--all"]);
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2);
    let described = ok_json(&dir, &url, &["key", "describe", "app-1"]);
    assert_eq!(described["key_metadata"]["description"], "first");
    assert_eq!(ok_json(&dir, &url, &["key", "disable", "app-1"])["key_metadata"]["key_state"], "disabled");
    assert_eq!(ok_json(&dir, &url, &["key", "enable", "app-1"])["key_metadata"]["key_state"], "enabled");
    assert_eq!(ok_json(&dir, &url, &["key", "rotate", "app-1"])["key_metadata"]["current_version"], 2);
    let tagged = ok_json(&dir, &url, &["key", "tag", "app-1", "env=prod"]);
    assert_eq!(tagged["key_metadata"]["tags"]["env"], "prod");
    let untagged = ok_json(&dir, &url, &["key", "untag", "app-1", "team"]);
    assert!(untagged["key_metadata"]["tags"].get("team").is_none());
    ok_json(&dir, &url, &["key", "set-description", "app-1", "renamed"]);
    let deleted = ok_json(&dir, &url, &["key", "delete", "app-2", "--pending-days", "7"]);
    assert_eq!(deleted["key_state"], "pending_deletion");
    let cancelled = ok_json(&dir, &url, &["key", "cancel-deletion", "app-2"]);
    assert_eq!(cancelled["key_state"], "disabled");
    let dk = ok_json(&dir, &url, &["datakey", "app-1", "--context", "bucket=photos"]);
    assert!(dk["plaintext_key"].is_string() && dk["ciphertext_blob"].is_string());
    let wrapped = ok_json(&dir, &url, &["datakey", "app-1", "--no-plaintext"]);
    assert!(wrapped.get("plaintext_key").is_none());

    // Human output is a table.
    let out = kms(&dir, &url, &["key", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("KEY ID") && text.contains("app-1") && text.contains("enabled"), "{text}");

    // Exit codes: not found 4, auth 3, usage 2, server unreachable 5, refused request 1.
    assert_eq!(kms(&dir, &url, &["key", "describe", "nope"]).status.code(), Some(4));
    assert_eq!(kms(&dir, &url, &["--token", "wrong", "key", "list"]).status.code(), Some(3));
    assert_eq!(kms(&dir, &url, &["key", "frobnicate"]).status.code(), Some(2));
    assert_eq!(kms(&dir, &url, &["key", "delete", "app-1", "--pending-days", "3"]).status.code(), Some(1));
    assert_eq!(kms(&dir, &format!("http://127.0.0.1:{}", free_port()), &["status"]).status.code(), Some(5));

    // Encrypt and decrypt a file over 100 MiB, then a range of it.
    let plain = dir.join("big.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&plain).unwrap());
        let mut block = vec![0u8; 1 << 20];
        for i in 0..101u32 {
            for (j, b) in block.iter_mut().enumerate() {
                *b = (j as u32).wrapping_mul(2_654_435_761).wrapping_add(i) as u8;
            }
            f.write_all(&block).unwrap();
        }
        f.write_all(b"tail").unwrap();
    }
    let enc = dir.join("big.kms");
    let out =
        kms(&dir, &url, &["encrypt", "--key", "app-1", "--context", "file=big", "-i", "big.bin", "-o", "big.kms"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::metadata(&enc).unwrap().len() > std::fs::metadata(&plain).unwrap().len());
    let out = kms(&dir, &url, &["decrypt", "--context", "file=big", "-i", "big.kms", "-o", "big.out"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sha256_file(&plain), sha256_file(&dir.join("big.out")));

    let (start, end) = (50_000_000u64, 50_200_123u64);
    let range = format!("{start}-{end}");
    let out =
        kms(&dir, &url, &["decrypt", "--context", "file=big", "-i", "big.kms", "-o", "range.out", "--range", &range]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = std::fs::read(&plain).unwrap();
    assert_eq!(std::fs::read(dir.join("range.out")).unwrap(), &all[start as usize..end as usize]);
    let out = kms(
        &dir,
        &url,
        &["decrypt", "--context", "file=big", "-i", "big.kms", "-o", "tail.out", "--range", "105906176-"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(dir.join("tail.out")).unwrap(), b"tail");

    // A wrong context does not decrypt, and leaves no output behind.
    let out = kms(&dir, &url, &["decrypt", "--context", "file=other", "-i", "big.kms", "-o", "bad.out"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.join("bad.out").exists());

    // stdin → stdout.
    let mut child = Command::new(KMS)
        .args(["--url", &url, "encrypt", "--key", "app-1"])
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello through a pipe").unwrap();
    let sealed = child.wait_with_output().unwrap();
    assert!(sealed.status.success());
    let mut child = Command::new(KMS)
        .args(["--url", &url, "decrypt"])
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&sealed.stdout).unwrap();
    let opened = child.wait_with_output().unwrap();
    assert!(opened.status.success());
    assert_eq!(opened.stdout, b"hello through a pipe");

    // Restart: SIGTERM, then the same data folder: keys, configuration and token survive.
    let mut server = server;
    assert!(server.terminate(), "server did not stop on SIGTERM");
    drop(server);
    let (server, banner) = serve(&dir, port, &[]);
    assert!(!banner.contains("created an admin token"), "{banner}");
    let described = ok_json(&dir, &url, &["key", "describe", "app-1"]);
    assert_eq!(described["key_metadata"]["description"], "renamed");
    assert_eq!(described["key_metadata"]["current_version"], 2);
    let out =
        kms(&dir, &url, &["decrypt", "--context", "file=big", "-i", "big.kms", "-o", "again.out", "--range", "0-1000"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(dir.join("again.out")).unwrap(), &all[..1000]);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_output_file_is_only_replaced_by_a_complete_result() {
    let dir = temp_dir("outputs");
    let port = free_port();
    let (server, _) = serve(&dir, port, &[]);
    let url = server.url.clone();
    ok_json(&dir, &url, &["key", "create", "--name", "k"]);

    // Encrypting a file onto itself keeps its content (the output is not the truncated input).
    std::fs::write(dir.join("notes.txt"), b"precious notes").unwrap();
    let out = kms(&dir, &url, &["encrypt", "--key", "k", "-i", "notes.txt", "-o", "notes.txt"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = kms(&dir, &url, &["decrypt", "-i", "notes.txt", "-o", "notes.out"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(dir.join("notes.out")).unwrap(), b"precious notes");
    // The plaintext lands in a private file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("notes.out")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A decryption that fails leaves an existing output file as it was.
    std::fs::write(dir.join("keep.txt"), b"keep me").unwrap();
    let out = kms(&dir, &url, &["decrypt", "--context", "a=b", "-i", "notes.txt", "-o", "keep.txt"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(dir.join("keep.txt")).unwrap(), b"keep me");
    // Decrypting a file onto itself fails without destroying it.
    let before = std::fs::read(dir.join("notes.txt")).unwrap();
    let _ = kms(&dir, &url, &["decrypt", "--context", "a=b", "-i", "notes.txt", "-o", "notes.txt"]);
    assert_eq!(std::fs::read(dir.join("notes.txt")).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The service commands and `datakey --no-plaintext` print the server's typed answers as the
/// server wrote them, in JSON and as `name: value` lines.
#[test]
fn the_service_commands_and_a_wrapped_data_key_print_the_servers_answers() {
    let dir = temp_dir("service");
    let port = free_port();
    let (server, _) = serve(&dir, port, &["--data-dir", dir.join("kms-data").to_str().unwrap()]);
    let url = server.url.clone();

    let config = ok_json(&dir, &url, &["service", "config"]);
    assert_eq!(config["config"]["backend"], "local", "{config}");
    assert_eq!(ok_json(&dir, &url, &["service", "clear-cache"]), serde_json::json!({"cleared": true}));
    let cleared = kms(&dir, &url, &["service", "clear-cache"]);
    assert_eq!(String::from_utf8_lossy(&cleared.stdout), "cleared  true\n");

    let stopped = ok_json(&dir, &url, &["service", "stop"]);
    assert_eq!(stopped, serde_json::json!({"status": {"state": "stopped"}, "persisted": true}));
    let started = ok_json(&dir, &url, &["service", "start"]);
    assert_eq!(started, serde_json::json!({"status": {"state": "running"}, "persisted": true}));
    let status = ok_json(&dir, &url, &["status"]);
    assert_eq!(status["status"]["state"], "running");
    assert!(status["cache"].is_object() && status["capabilities"].is_object(), "{status}");

    ok_json(&dir, &url, &["key", "create", "--name", "app"]);
    let wrapped = ok_json(&dir, &url, &["datakey", "app", "--no-plaintext", "--spec", "aes128"]);
    let fields: Vec<&str> = wrapped.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields, ["ciphertext_blob", "key_id", "key_version"], "{wrapped}");
    assert_eq!((&wrapped["key_id"], &wrapped["key_version"]), (&serde_json::json!("app"), &serde_json::json!(1)));
    let plain = ok_json(&dir, &url, &["datakey", "app"]);
    let fields: Vec<&str> = plain.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields, ["ciphertext_blob", "key_id", "key_version", "plaintext_key"], "{plain}");
    assert_eq!(plain["plaintext_key"].as_str().unwrap().len(), 44, "{plain}");
}
