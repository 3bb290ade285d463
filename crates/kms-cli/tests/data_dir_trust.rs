//! `kms serve` refuses a data folder another user could have written (the audit's
//! reproduction: a world-writable folder with a planted admin token hash).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::{KMS, free_port, temp_dir};

#[test]
fn kms_serve_refuses_a_world_writable_data_dir_with_a_planted_admin_token() {
    let dir = temp_dir("planted-token");
    let data_dir = dir.join("kms-data");
    std::fs::create_dir(&data_dir).unwrap();
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    // SHA-256 of "abc": the token an attacker would then present.
    let planted = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n";
    std::fs::write(data_dir.join("admin.token.sha256"), planted).unwrap();
    let mut child = Command::new(KMS)
        .current_dir(&dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
        .arg(&data_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("kms serve started on an untrusted data folder");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("writable by group or others"), "{stderr}");
    assert_eq!(std::fs::read_to_string(data_dir.join("admin.token.sha256")).unwrap(), planted);
    let _ = std::fs::remove_dir_all(&dir);
}
