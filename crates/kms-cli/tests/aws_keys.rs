//! `kms token aws`: a new access key for an identity, the secret sealed with the data folder's
//! seal key in the printed table and shown in the clear only once, for the client.

mod common;

use std::process::Command;

use common::{KMS, temp_dir};
use kms::admin::aws::settings::{AccessKeyConfig, AwsSettings, Credentials};
use kms::admin::store::ConfigStore;

fn value<'a>(out: &'a str, key: &str) -> &'a str {
    let line = out.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("{key}: {out}"));
    line.split_once(" = ").unwrap().1.trim_matches('"')
}

#[test]
fn token_aws_prints_a_sealed_key_the_server_opens() {
    let dir = temp_dir("token-aws");
    let out = Command::new(KMS).args(["token", "aws", "--identity", "app", "--data-dir"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("[[server.aws.access_keys]]"), "{text}");
    let key = AccessKeyConfig {
        identity: value(&text, "identity").to_owned(),
        access_key_id: value(&text, "access_key_id").to_owned(),
        secret_access_key: value(&text, "secret_access_key").to_owned(),
    };
    let secret = value(&text, "aws_secret_access_key");
    assert_eq!(value(&text, "aws_access_key_id"), key.access_key_id);
    assert!(key.secret_access_key.starts_with("sealed:v1:") && !key.secret_access_key.contains(secret));
    // The server, with the same data folder, opens it to the secret the client got.
    let store = ConfigStore::open(&dir, None).unwrap();
    let settings = AwsSettings { access_keys: vec![key.clone()], ..AwsSettings::default() };
    let opened = Credentials::open(&settings, Some(&store), |n| n == "app").unwrap();
    assert_eq!(opened.lookup(&key.access_key_id), Some(("app", secret.as_bytes())));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn token_aws_without_an_identity_is_a_usage_error() {
    let out = Command::new(KMS).args(["token", "aws"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--identity"));
}
