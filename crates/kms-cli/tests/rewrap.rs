//! `kms rewrap`: files made by `kms encrypt` move to a rotated key version (or another key)
//! with their data untouched, atomically per file; a run stopped by a failure resumes.

mod common;

use std::path::{Path, PathBuf};

use common::{free_port, kms, ok, ok_json, serve, temp_dir};
use serde_json::Value;

/// The header's wrapped key and the bytes after it.
fn split(path: &Path) -> (Vec<u8>, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let len = u32::from_be_bytes(bytes[5..9].try_into().unwrap()) as usize;
    (bytes[9..9 + len].to_vec(), bytes[9 + len..].to_vec())
}

fn json_lines(out: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn decrypts_to(dir: &Path, url: &str, file: &str, context: &[&str], plain: &[u8]) {
    let mut args = vec!["decrypt", "-i", file];
    args.extend(context.iter().flat_map(|c| ["--context", c]));
    let out = kms(dir, url, &args);
    assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, plain, "{file}");
}

/// A server in a fresh folder with key `k` and an empty `files/` folder.
fn setup(name: &str) -> (PathBuf, common::Server, String) {
    let dir = temp_dir(name);
    let (server, _) = serve(&dir, free_port(), &[]);
    let url = server.url.clone();
    ok_json(&dir, &url, &["key", "create", "--name", "k"]);
    std::fs::create_dir_all(dir.join("files")).unwrap();
    (dir, server, url)
}

fn assert_no_temporary_files(dir: &Path) {
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn rewrap_moves_files_to_the_rotated_version_without_touching_their_data() {
    let (dir, server, url) = setup("rewrap");
    std::fs::create_dir_all(dir.join("files/sub")).unwrap();
    std::fs::write(dir.join("files/readme.txt"), b"not encrypted").unwrap();
    for (i, name) in ["files/a.kms", "files/b.kms", "files/sub/c.kms"].iter().enumerate() {
        std::fs::write(dir.join("plain"), format!("content {i}").repeat(1000)).unwrap();
        ok(&dir, &url, &["encrypt", "--key", "k", "--context", "app=x", "-i", "plain", "-o", name]);
    }
    let before = split(&dir.join("files/a.kms"));
    assert_eq!(ok_json(&dir, &url, &["key", "rotate", "k"])["key_metadata"]["current_version"], 2);

    let out = kms(&dir, &url, &["--json", "rewrap", "--context", "app=x", "files"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out);
    let statuses: Vec<(&str, &str)> =
        lines.iter().map(|l| (l["path"].as_str().unwrap(), l["status"].as_str().unwrap())).collect();
    assert_eq!(
        statuses,
        [
            ("files/a.kms", "rewrapped"),
            ("files/b.kms", "rewrapped"),
            ("files/readme.txt", "not_kms"),
            ("files/sub/c.kms", "rewrapped")
        ]
    );
    assert_eq!(lines[0]["from"], serde_json::json!({"key_id": "k", "version": 1}));
    assert_eq!(lines[0]["to"], serde_json::json!({"key_id": "k", "version": 2}));
    let after = split(&dir.join("files/a.kms"));
    assert_ne!(after.0, before.0, "the wrapped key changed");
    assert_eq!(after.1, before.1, "the data is untouched");
    for (i, name) in ["files/a.kms", "files/b.kms", "files/sub/c.kms"].iter().enumerate() {
        decrypts_to(&dir, &url, name, &["app=x"], format!("content {i}").repeat(1000).as_bytes());
    }
    assert!(!dir.join(".kms-rewrap.journal").exists(), "a finished run removes its journal");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("files/a.kms")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the file keeps its mode");
    }

    // Run again: every file is already current and stays byte for byte the same.
    let out = kms(&dir, &url, &["--json", "rewrap", "--context", "app=x", "files/a.kms"]);
    assert!(out.status.success());
    assert_eq!(json_lines(&out)[0]["status"], "current");
    assert_eq!(split(&dir.join("files/a.kms")), after);

    // To another key.
    ok_json(&dir, &url, &["key", "create", "--name", "other"]);
    let out = kms(&dir, &url, &["--json", "rewrap", "--context", "app=x", "--to-key", "other", "files/b.kms"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_lines(&out)[0]["to"]["key_id"], "other");
    decrypts_to(&dir, &url, "files/b.kms", &["app=x"], "content 1".repeat(1000).as_bytes());

    // A named file that is not a kms file is an error.
    let out = kms(&dir, &url, &["rewrap", "files/readme.txt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a kms-encrypted file"));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_interrupted_rewrap_resumes_where_it_stopped() {
    let (dir, server, url) = setup("rewrap-resume");
    ok_json(&dir, &url, &["key", "create", "--name", "k1"]);
    ok_json(&dir, &url, &["key", "create", "--name", "k2"]);
    // Sorted order: 1 and 2 under k1, 3 under k2 (disabled below: the run stops there), 4 under k1.
    for (name, key) in [("1.kms", "k1"), ("2.kms", "k1"), ("3.kms", "k2"), ("4.kms", "k1")] {
        std::fs::write(dir.join("plain"), name.repeat(100)).unwrap();
        ok(&dir, &url, &["encrypt", "--key", key, "-i", "plain", "-o", &format!("files/{name}")]);
    }
    ok_json(&dir, &url, &["key", "rotate", "k1"]);
    ok_json(&dir, &url, &["key", "rotate", "k2"]);
    ok_json(&dir, &url, &["key", "disable", "k2"]);

    let out = kms(&dir, &url, &["--json", "rewrap", "files"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("files/3.kms") && stderr.contains("--resume"), "{stderr}");
    let statuses: Vec<String> = json_lines(&out).iter().map(|l| l["status"].as_str().unwrap().to_owned()).collect();
    assert_eq!(statuses, ["rewrapped", "rewrapped", "failed"]);
    let journal = std::fs::read_to_string(dir.join(".kms-rewrap.journal")).unwrap();
    assert_eq!(journal, "files/1.kms\nfiles/2.kms\n");
    // Every file decrypts in between: rewrapped, or as it was.
    ok_json(&dir, &url, &["key", "enable", "k2"]);
    for name in ["1.kms", "2.kms", "3.kms", "4.kms"] {
        decrypts_to(&dir, &url, &format!("files/{name}"), &[], name.repeat(100).as_bytes());
    }
    let first = split(&dir.join("files/1.kms"));

    let out = kms(&dir, &url, &["--json", "rewrap", "--resume", "files"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out);
    let statuses: Vec<&str> = lines.iter().map(|l| l["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["done_before", "done_before", "rewrapped", "rewrapped"]);
    assert_eq!(lines[2]["to"], serde_json::json!({"key_id": "k2", "version": 2}));
    assert_eq!(split(&dir.join("files/1.kms")), first, "files done before are not touched again");
    assert!(!dir.join(".kms-rewrap.journal").exists());
    for name in ["1.kms", "2.kms", "3.kms", "4.kms"] {
        decrypts_to(&dir, &url, &format!("files/{name}"), &[], name.repeat(100).as_bytes());
    }
    assert_no_temporary_files(&dir.join("files"));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_rewrap_leaves_every_file_readable_and_resumes() {
    let (dir, server, url) = setup("rewrap-kill");
    std::fs::write(dir.join("plain"), b"the same data in every file").unwrap();
    let count = 200;
    // Made once, then copied: the test is about rewrapping, not about encrypting.
    ok(&dir, &url, &["encrypt", "--key", "k", "-i", "plain", "-o", "files/0000.kms"]);
    for i in 1..count {
        std::fs::copy(dir.join("files/0000.kms"), dir.join(format!("files/{i:04}.kms"))).unwrap();
    }
    ok_json(&dir, &url, &["key", "rotate", "k"]);

    let mut child = std::process::Command::new(common::KMS)
        .args(["--url", &url, "--json", "rewrap", "files"])
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let journal = dir.join(".kms-rewrap.journal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_to_string(&journal).map_or(0, |j| j.lines().count()) < 5 {
        assert!(std::time::Instant::now() < deadline, "the rewrap made no progress");
        assert!(child.try_wait().unwrap().is_none(), "the rewrap ended before it could be interrupted");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = std::fs::read_to_string(&journal).unwrap().lines().count();
    assert!(done < count, "the run was interrupted");

    // Every file is readable, rewrapped or not.
    for i in (0..count).step_by(13) {
        decrypts_to(&dir, &url, &format!("files/{i:04}.kms"), &[], b"the same data in every file");
    }
    let out = kms(&dir, &url, &["--json", "rewrap", "--resume", "files"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), count);
    let before = lines.iter().filter(|l| l["status"] == "done_before").count();
    assert_eq!(before, done, "the journal's files are skipped");
    assert!(lines.iter().all(|l| l["status"] == "done_before" || l["to"]["version"] == 2));
    assert_no_temporary_files(&dir.join("files"));
    for i in (0..count).step_by(7) {
        decrypts_to(&dir, &url, &format!("files/{i:04}.kms"), &[], b"the same data in every file");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
