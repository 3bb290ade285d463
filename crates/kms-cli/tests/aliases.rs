//! `kms alias ...` against a real `kms serve`, and an alias wherever a command takes a key id
//! (`kms key describe`, `kms datakey`, `kms encrypt --key`).

mod common;

use common::{free_port, kms, ok, ok_json, serve, temp_dir};

#[test]
fn aliases_from_the_command_line() {
    let dir = temp_dir("aliases");
    let data_dir = dir.join("kms-data");
    let (server, _) = serve(&dir, free_port(), &["--data-dir", data_dir.to_str().unwrap()]);
    let url = server.url.clone();
    ok_json(&dir, &url, &["key", "create", "--name", "app-1"]);
    ok_json(&dir, &url, &["key", "create", "--name", "app-2"]);

    let created = ok_json(&dir, &url, &["alias", "create", "alias/team/app", "app-1"]);
    assert_eq!(
        (created["alias_name"].as_str(), created["target_key_id"].as_str()),
        (Some("alias/team/app"), Some("app-1"))
    );
    ok_json(&dir, &url, &["alias", "create", "alias/b", "app-2"]);
    let listed = ok_json(&dir, &url, &["alias", "list", "--limit", "1", "--all"]);
    let names: Vec<&str> =
        listed["aliases"].as_array().unwrap().iter().map(|a| a["alias_name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alias/b", "alias/team/app"]);
    let of_key = ok_json(&dir, &url, &["alias", "list", "--key-id", "app-2"]);
    assert_eq!(of_key["aliases"].as_array().unwrap().len(), 1);
    let table = kms(&dir, &url, &["alias", "list"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("ALIAS") && text.contains("alias/team/app") && text.contains("app-1"), "{text}");

    // An alias wherever a key id goes.
    assert_eq!(ok_json(&dir, &url, &["key", "describe", "alias/team/app"])["key_metadata"]["key_id"], "app-1");
    assert_eq!(ok_json(&dir, &url, &["datakey", "alias/team/app"])["key_id"], "app-1");
    std::fs::write(dir.join("notes.txt"), b"notes under an alias").unwrap();
    ok(&dir, &url, &["encrypt", "--key", "alias/team/app", "--context", "a=b", "-i", "notes.txt", "-o", "notes.kms"]);
    ok(&dir, &url, &["decrypt", "--context", "a=b", "-i", "notes.kms", "-o", "notes.out"]);
    assert_eq!(std::fs::read(dir.join("notes.out")).unwrap(), b"notes under an alias");

    let moved = ok_json(&dir, &url, &["alias", "update", "alias/team/app", "app-2"]);
    assert_eq!(moved["target_key_id"], "app-2");
    assert_eq!(ok_json(&dir, &url, &["key", "describe", "alias/team/app"])["key_metadata"]["key_id"], "app-2");
    let deleted = ok_json(&dir, &url, &["alias", "delete", "alias/team/app"]);
    assert_eq!(deleted["target_key_id"], "app-2");

    // Exit codes: a taken name is refused (1), an unknown alias is not found (4), a malformed
    // one is a usage error caught before any request (2).
    assert_eq!(kms(&dir, &url, &["alias", "create", "alias/b", "app-1"]).status.code(), Some(1));
    assert_eq!(kms(&dir, &url, &["alias", "delete", "alias/team/app"]).status.code(), Some(4));
    assert_eq!(kms(&dir, &url, &["key", "describe", "alias/team/app"]).status.code(), Some(4));
    for args in [
        &["alias", "create", "team/app", "app-1"][..],
        &["alias", "delete", "alias/aws/x"],
        &["key", "describe", "alias/a b"],
    ] {
        assert_eq!(kms(&dir, &url, args).status.code(), Some(2), "{args:?}");
    }
    drop(server);
}

/// `kms backup` carries the aliases and `kms restore` brings them back.
#[test]
fn aliases_survive_backup_and_restore() {
    use std::os::unix::fs::PermissionsExt;
    let old = temp_dir("aliases-backup-old");
    let (server, _) = serve(&old, free_port(), &["--data-dir", old.join("kms-data").to_str().unwrap()]);
    let url = server.url.clone();
    ok_json(&old, &url, &["key", "create", "--name", "app-1"]);
    ok_json(&old, &url, &["alias", "create", "alias/app", "app-1"]);
    ok(&old, &url, &["backup", "--out", "keys.bundle"]);
    drop(server);

    let new = temp_dir("aliases-backup-new");
    let data = new.join("kms-data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(old.join("kms-data/master.key"), data.join("master.key")).unwrap();
    std::fs::set_permissions(data.join("master.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let bundle = old.join("keys.bundle");
    let restored = ok_json(&new, &url, &["restore", bundle.to_str().unwrap()]);
    assert_eq!((restored["keys"].as_u64(), restored["aliases"].as_u64()), (Some(1), Some(1)), "{restored}");
    let (server, _) = serve(&new, free_port(), &[]);
    let described = ok_json(&new, &server.url, &["key", "describe", "alias/app"]);
    assert_eq!(described["key_metadata"]["key_id"], "app-1");
    drop(server);
}
