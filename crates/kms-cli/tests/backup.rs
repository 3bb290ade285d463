//! `kms backup` against a running server under load, then `kms restore` into a new data folder
//! with the master key put back, and the refusals: no token, an altered or truncated bundle,
//! another master key, a folder whose store holds keys.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{KMS, free_port, kms, ok, ok_json, serve, temp_dir};

fn restore(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(KMS).arg("restore").args(args).current_dir(dir).env_remove("KMS_DATA_DIR").output().unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_backup_under_load_restores_into_a_new_folder_and_every_earlier_file_decrypts() {
    let old = temp_dir("backup-old");
    let port = free_port();
    let (server, _) = serve(&old, port, &[]);
    let url = server.url.clone();
    for name in ["app-1", "app-2"] {
        ok_json(&old, &url, &["key", "create", "--name", name]);
    }
    ok(&old, &url, &["key", "rotate", "app-2"]);
    for (i, name) in ["app-1", "app-2"].iter().enumerate() {
        std::fs::write(old.join(format!("f{i}.txt")), format!("file {i}")).unwrap();
        let (input, output) = (format!("f{i}.txt"), format!("f{i}.kms"));
        ok(&old, &url, &["encrypt", "--key", name, "--context", "f=x", "-i", &input, "-o", &output]);
    }

    // Keys are created and rotated by another client while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (old, url, stop) = (old.clone(), url.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut made = 0;
            while !stop.load(Ordering::Relaxed) && made < 40 {
                ok_json(&old, &url, &["key", "create", "--name", &format!("load-{made:02}")]);
                ok(&old, &url, &["key", "rotate", "app-1"]);
                made += 1;
            }
        })
    };
    let out = kms(&old, &url, &["--json", "backup", "--out", "keys.bundle"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let bundle_path = old.join("keys.bundle");
    assert_eq!(std::fs::metadata(&bundle_path).unwrap().permissions().mode() & 0o777, 0o600);
    let bundle = std::fs::read(&bundle_path).unwrap();
    assert!(bundle.starts_with(b"KMSBKUP\0"));
    let master_key = std::fs::read(old.join("kms-data/master.key")).unwrap();
    assert!(!bundle.windows(master_key.len()).any(|w| w == master_key.as_slice()), "the master key is not in it");
    ok_json(&old, &url, &["key", "create", "--name", "after-backup"]);

    // Without a token, the server refuses (401, exit 3).
    let elsewhere = temp_dir("backup-elsewhere");
    let out = kms(&elsewhere, &url, &["backup", "--out", "x.bundle"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(!elsewhere.join("x.bundle").exists());
    drop(server);

    // A new folder: the master key is put back first, then the bundle restored.
    let new = temp_dir("backup-new");
    let data = new.join("kms-data");
    let bundle_arg = bundle_path.to_str().unwrap();
    let out = restore(&new, &[bundle_arg]);
    assert_eq!(out.status.code(), Some(2), "no master key yet: {}", stderr(&out));
    assert!(stderr(&out).contains("master.key"), "{}", stderr(&out));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(old.join("kms-data/master.key"), data.join("master.key")).unwrap();
    std::fs::set_permissions(data.join("master.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = restore(&new, &[bundle_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Restoring again, over the store it just filled, is refused.
    let out = restore(&new, &[bundle_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("empty key store"), "{}", stderr(&out));

    let (server, _) = serve(&new, free_port(), &[]);
    let url = server.url.clone();
    for i in 0..2 {
        let (input, output) = (old.join(format!("f{i}.kms")), format!("f{i}.out"));
        let input = input.to_str().unwrap();
        ok(&new, &url, &["decrypt", "--context", "f=x", "-i", input, "-o", &output]);
        assert_eq!(std::fs::read_to_string(new.join(&output)).unwrap(), format!("file {i}"));
    }
    let described = ok_json(&new, &url, &["key", "describe", "app-2"]);
    assert_eq!(described["key_metadata"]["current_version"], 2, "{described}");
    let out = kms(&new, &url, &["key", "describe", "after-backup"]);
    assert_eq!(out.status.code(), Some(4), "a key made after the backup is not found: {}", stderr(&out));
    drop(server);
    for dir in [&old, &new, &elsewhere] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn restore_refuses_an_altered_or_truncated_bundle_and_another_master_key() {
    let old = temp_dir("restore-refusals-old");
    let (server, _) = serve(&old, free_port(), &[]);
    ok_json(&old, &server.url, &["key", "create", "--name", "k"]);
    ok(&old, &server.url, &["backup", "--out", "keys.bundle"]);
    drop(server);
    let bundle = std::fs::read(old.join("keys.bundle")).unwrap();

    let new = temp_dir("restore-refusals-new");
    let data = new.join("kms-data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut altered = bundle.clone();
    let middle = altered.len() / 2;
    altered[middle] ^= 1;
    std::fs::write(new.join("altered.bundle"), &altered).unwrap();
    std::fs::write(new.join("truncated.bundle"), &bundle[..bundle.len() - 5]).unwrap();
    std::fs::copy(old.join("keys.bundle"), new.join("keys.bundle")).unwrap();
    std::fs::copy(old.join("kms-data/master.key"), data.join("master.key")).unwrap();
    for file in ["altered.bundle", "truncated.bundle"] {
        let out = restore(&new, &[file]);
        assert_eq!(out.status.code(), Some(1), "{file}: {}", stderr(&out));
        assert!(stderr(&out).contains("not a valid kms backup bundle"), "{file}: {}", stderr(&out));
        assert!(!data.join("keys").exists(), "{file}: nothing is written");
    }
    // Another master key (32 bytes, base64) in its place.
    std::fs::write(data.join("master.key"), "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").unwrap();
    let out = restore(&new, &["keys.bundle"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrong master key"), "{}", stderr(&out));
    assert!(!data.join("keys").exists(), "nothing is written");
    for dir in [&old, &new] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn restore_into_a_folder_with_a_saved_service_uses_its_key_store_and_master_key() {
    let dir = temp_dir("restore-saved");
    let (server, _) = serve(&dir, free_port(), &[]);
    ok_json(&dir, &server.url, &["key", "create", "--name", "kept"]);
    ok(&dir, &server.url, &["backup", "--out", "keys.bundle"]);
    drop(server);
    let saved = std::fs::read_to_string(dir.join("kms-data/service-state.json")).unwrap();
    assert!(saved.contains("keys"), "the saved service names its key store: {saved}");

    // While the store holds its key, restoring over it is refused.
    let out = restore(&dir, &["keys.bundle", "--data-dir", "kms-data"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("empty key store"), "{}", stderr(&out));
    // The key store is lost; the saved configuration, the master key and the bundle are not.
    std::fs::remove_dir_all(dir.join("kms-data/keys")).unwrap();
    let out = restore(&dir, &["--json", "keys.bundle", "--data-dir", "kms-data"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["keys"], 1, "{report}");

    let (server, _) = serve(&dir, free_port(), &[]);
    let described = ok_json(&dir, &server.url, &["key", "describe", "kept"]);
    assert_eq!(described["key_metadata"]["key_state"], "enabled", "{described}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
