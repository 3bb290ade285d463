//! The README's walk-through, run as written: every ```sh block of README.md in order, in a
//! fresh temporary folder, against the `kms` binary under test.
//!
//! Three things differ from a person typing it, and only these: a block made only of `cargo`
//! commands (installing or testing kms itself) is not run, the binary under test stands in for
//! the installed one; the block that starts `kms serve` in the background is started by the
//! test, which waits for it to listen; and port 7373 becomes a free port (`KMS_LISTEN` and
//! `KMS_URL` point there, and `:7373` in the blocks is rewritten), so the test never meets
//! another server.

mod common;

use std::path::Path;
use std::process::Command;

use common::{KMS, free_port, serve, temp_dir};

/// The ```sh blocks of `text`, in order.
fn sh_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().expect("inside a block")),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "README.md has an unterminated code block");
    blocks
}

fn commands(block: &str) -> Vec<&str> {
    block.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
}

#[test]
fn the_readme_walk_through_runs_as_written() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let blocks = sh_blocks(&readme);
    assert!(blocks.len() >= 4, "the README lost its walk-through");
    let dir = temp_dir("readme");
    let port = free_port();
    let bin_dir = Path::new(KMS).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut server = None;
    let mut ran = 0;
    for block in &blocks {
        let lines = commands(block);
        if lines.iter().all(|l| l.starts_with("cargo ")) {
            continue;
        }
        if let [only] = lines.as_slice()
            && only.starts_with("kms serve")
        {
            assert!(server.is_none(), "the README starts two servers");
            let args: Vec<&str> = only.trim_end_matches('&').split_whitespace().skip(2).collect();
            let (started, banner) = serve(&dir, port, &args);
            assert!(banner.contains("master.key"), "the first start does not mention the master key: {banner}");
            server = Some(started);
            continue;
        }
        assert!(server.is_some(), "a README block runs before the server is started:\n{block}");
        let script = block.replace(":7373", &format!(":{port}"));
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(&dir)
            .env("PATH", &path)
            .env("KMS_URL", format!("http://127.0.0.1:{port}"))
            .env_remove("KMS_TOKEN")
            .env_remove("KMS_TOKEN_FILE")
            .env_remove("KMS_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README block failed ({}):\n{block}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    assert!(server.is_some(), "the README never starts the server");
    assert!(ran >= 3, "only {ran} README blocks ran");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sh_blocks_are_found_in_order() {
    let text = "a\n```sh\none\n```\n```toml\nx\n```\n```sh\ntwo\nthree\n```\n";
    assert_eq!(sh_blocks(text), vec!["one\n".to_owned(), "two\nthree\n".to_owned()]);
}
