//! `kms key create --origin external` and `kms key import` (BYOK) against a real `kms serve`:
//! the CLI wraps the file's material itself; the material then decrypts what it encrypted
//! after a delete and re-import, and bad files are refused before any request.

mod common;

use common::{free_port, kms, ok, ok_json, serve, temp_dir};

#[test]
fn material_from_a_file_is_imported_deleted_and_imported_again() {
    let dir = temp_dir("byok");
    let data_dir = dir.join("kms-data");
    let (server, _) = serve(&dir, free_port(), &["--data-dir", data_dir.to_str().unwrap()]);
    let url = server.url.clone();
    let created = ok_json(&dir, &url, &["key", "create", "--name", "hsm-1", "--origin", "external"]);
    assert_eq!(created["key_metadata"]["key_state"], "pending_import");

    std::fs::write(dir.join("material.bin"), [0x3Cu8; 32]).unwrap();
    let args = ["key", "import", "hsm-1", "--material-file", "material.bin", "--wrapping-key-spec", "rsa-3072"];
    let imported = ok_json(&dir, &url, &args);
    assert_eq!(imported["key_metadata"]["key_state"], "enabled");

    std::fs::write(dir.join("notes.txt"), b"under imported material").unwrap();
    ok(&dir, &url, &["encrypt", "--key", "hsm-1", "-i", "notes.txt", "-o", "notes.kms"]);
    let deleted = ok_json(&dir, &url, &["key", "delete-material", "hsm-1"]);
    assert_eq!(deleted["key_metadata"]["key_state"], "pending_import");
    assert_ne!(kms(&dir, &url, &["decrypt", "-i", "notes.kms", "-o", "notes.out"]).status.code(), Some(0));

    // Different material is refused; the same material brings the key back.
    std::fs::write(dir.join("other.bin"), [0x3Du8; 32]).unwrap();
    let other =
        kms(&dir, &url, &["key", "import", "hsm-1", "--material-file", "other.bin", "--wrapping-key-spec", "rsa-3072"]);
    assert_eq!(other.status.code(), Some(1), "{}", String::from_utf8_lossy(&other.stderr));
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("incorrect_key_material"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    ok_json(
        &dir,
        &url,
        &["key", "import", "hsm-1", "--material-file", "material.bin", "--valid-to", "2999-01-01T00:00:00Z"],
    );
    ok(&dir, &url, &["decrypt", "-i", "notes.kms", "-o", "notes.out"]);
    assert_eq!(std::fs::read(dir.join("notes.out")).unwrap(), b"under imported material");

    // A file that is not 32 bytes, and a bad date, are refused before any request.
    std::fs::write(dir.join("short.bin"), [1u8; 31]).unwrap();
    let short = kms(&dir, &url, &["key", "import", "hsm-1", "--material-file", "short.bin"]);
    assert_ne!(short.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&short.stderr).contains("31 bytes"), "{}", String::from_utf8_lossy(&short.stderr));
    let bad_date =
        kms(&dir, &url, &["key", "import", "hsm-1", "--material-file", "material.bin", "--valid-to", "tomorrow"]);
    assert_eq!(bad_date.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad_date.stderr));
}
