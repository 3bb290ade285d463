//! The published test vectors of the formats `kms` writes itself (`docs/vectors/kms-file-v1.json`,
//! `docs/vectors/admin-token-v1.json` and `docs/vectors/aws-credentials-v1.json`, described in
//! `docs/formats.md`): a `kms encrypt`
//! file is read back with this binary's header reader and stream decryption, and the admin
//! token files `kms serve` creates have the documented bytes. `docs/vectors/check.py`
//! re-derives the same files in Python.

use std::io::Read;

use kms::crypto::keys::PlaintextDataKey;
use kms::crypto::stream::{DecryptingReader, Part};
use kms::types::EncryptionContext;
use kms_testkit::vectors::hex;
use serde_json::Value;

fn cases(text: &str, format: &str) -> Vec<Value> {
    kms_testkit::vectors::cases(text, format, 1)
}

#[test]
fn kms_file_v1() {
    for case in cases(include_str!("../../../docs/vectors/kms-file-v1.json"), "kms-file") {
        let name = &case["name"];
        let file = hex(&case["file"]);
        let mut input = &file[..];
        assert_eq!(crate::files::read_header(&mut input).unwrap(), hex(&case["wrapped_data_key"]), "{name}");
        assert_eq!(input, hex(&case["stream"]), "{name}: the stream follows the wrapped key");
        let data_key = PlaintextDataKey::from_bytes(&hex(&case["data_key"])).unwrap();
        let context: EncryptionContext = serde_json::from_value(case["context"].clone()).unwrap();
        let mut plaintext = Vec::new();
        DecryptingReader::new(input, &data_key, &context, Part::Whole).read_to_end(&mut plaintext).unwrap();
        assert_eq!(plaintext, hex(&case["plaintext"]), "{name}");

        let mut other_version = file.clone();
        other_version[4] = 2;
        let err = crate::files::read_header(&mut &other_version[..]).unwrap_err();
        assert_eq!(err.code, crate::client::exit::FAILED, "{name}");
        assert!(err.message.starts_with("unsupported kms file version 2"), "{name}: {}", err.message);
    }
}

/// `kms serve`'s first start writes `admin.token` and `admin.token.sha256` as the vectors show.
#[test]
fn admin_token_files_v1() {
    let case = &cases(include_str!("../../../docs/vectors/admin-token-v1.json"), "admin-token")[0];
    let token_file = case["token_file"].as_str().unwrap();
    assert_eq!(token_file.len(), 4 + 43 + 1);
    assert_eq!(
        case["sha256_file"].as_str().unwrap(),
        format!("{}\n", kms::admin::auth::hash_token(token_file.trim_end_matches('\n')))
    );

    let dir = std::env::temp_dir().join(format!("kms-cli-vectors-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    crate::serve::bootstrap_admin(&dir, &[]).unwrap();
    let token = std::fs::read_to_string(dir.join(crate::serve::ADMIN_TOKEN_FILE)).unwrap();
    let hash = std::fs::read_to_string(dir.join(crate::serve::ADMIN_HASH_FILE)).unwrap();
    let body = token.strip_suffix('\n').expect("the token file ends with one newline");
    assert_eq!(token.len(), token_file.len());
    assert!(body.starts_with("kms_"));
    assert!(body[4..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(hash, format!("{}\n", kms::admin::auth::hash_token(body)));
    assert_eq!(hash.len(), 64 + 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A whole data directory made by `kms serve` at fc42d7d (`docs/vectors/serve-data-dir-v1.json`):
/// its files read back with this build's code, from the master key file to the plaintext of a
/// file `kms encrypt` wrote.
#[tokio::test]
async fn serve_data_dir_v1() {
    use kms::backends::KmsBackend;
    use kms::config::{BackendConfig, LocalConfig, MasterKeySource};
    use kms::types::DecryptRequest;
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

    let case = &cases(include_str!("../../../docs/vectors/serve-data-dir-v1.json"), "serve-data-dir")[0];
    let files = &case["files"];
    let file = |name: &str| files[name].as_str().unwrap_or_else(|| panic!("{name}"));
    let dir = std::env::temp_dir().join(format!("kms-cli-serve-vector-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir.join("keys")).unwrap();
    for (name, content) in files.as_object().unwrap() {
        std::fs::write(dir.join(name), content.as_str().unwrap()).unwrap();
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    // admin.token.sha256 is what bootstrap reads back as the identity's hash.
    let (identity, created) = crate::serve::bootstrap_admin(&dir, &[]).unwrap();
    assert!(!created);
    assert_eq!(identity.token_sha256, kms::admin::auth::hash_token(file("admin.token").trim_end()));

    // service-state.json opens with config-seal.key and names the default local backend.
    let store = kms::admin::store::ConfigStore::open(&dir, None).unwrap();
    let state = store.load().unwrap().unwrap();
    assert!(state.running);
    let data_dir = case["data_dir"].as_str().unwrap();
    match &state.config.backend_config {
        BackendConfig::Local(local) => {
            assert_eq!(local.key_dir, std::path::Path::new(data_dir).join("keys"));
            let master = MasterKeySource::File { path: std::path::Path::new(data_dir).join("master.key") };
            assert_eq!(local.master_key, master);
        }
        other => panic!("{other:?}"),
    }

    // The key store opens with master.key; the encrypted file's wrapped key decrypts to its
    // data key, and the stream to the plaintext.
    let master = MasterKeySource::File { path: dir.join("master.key") };
    let backend = kms::local::LocalBackend::open(&LocalConfig::new(dir.join("keys"), master)).await.unwrap();
    let encrypted = hex(&case["encrypted_file"]);
    let mut input = &encrypted[..];
    let wrapped = crate::files::read_header(&mut input).unwrap();
    let context: EncryptionContext = serde_json::from_value(case["context"].clone()).unwrap();
    let request = DecryptRequest { ciphertext_blob: wrapped, encryption_context: context.clone(), key_id: None };
    let opened = backend.decrypt(request).await.unwrap();
    assert_eq!(opened.key_id, case["key_id"].as_str().unwrap());
    let data_key = PlaintextDataKey::from_bytes(opened.plaintext.expose_secret()).unwrap();
    let mut plaintext = Vec::new();
    DecryptingReader::new(input, &data_key, &context, Part::Whole).read_to_end(&mut plaintext).unwrap();
    assert_eq!(plaintext, hex(&case["plaintext"]));
    backend.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `docs/vectors/aws-credentials-v1.json`: the server reads the documented `admin.aws-key.json`
/// (its secret sealed under `config-seal.key`) and opens the secret the clients' documented
/// `aws-credentials` file holds; a secret moved to another access key id does not open.
#[test]
fn aws_credentials_v1() {
    use kms::admin::aws::settings::{AwsSettings, Credentials};
    use kms::admin::store::{ConfigStore, SEAL_KEY_FILE, write_private_file};
    use std::os::unix::fs::DirBuilderExt;

    use crate::aws_keys::{ADMIN_AWS_KEY_FILE, bootstrap_access_key};

    for (i, case) in
        cases(include_str!("../../../docs/vectors/aws-credentials-v1.json"), "aws-credentials").iter().enumerate()
    {
        let name = &case["name"];
        let text = |k: &str| case[k].as_str().unwrap().to_owned();
        let dir = std::env::temp_dir().join(format!("kms-cli-aws-vector-{}-{i}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        write_private_file(&dir.join(SEAL_KEY_FILE), text("seal_key_file").as_bytes()).unwrap();
        write_private_file(&dir.join(ADMIN_AWS_KEY_FILE), text("admin_aws_key_json").as_bytes()).unwrap();
        let store = ConfigStore::open(&dir, None).unwrap();
        let (key, created) = bootstrap_access_key(&dir, &store, "admin").unwrap();
        assert!(!created, "{name}: the saved key is read, not replaced");
        assert_eq!(key.access_key_id, text("access_key_id"), "{name}");
        let credentials = format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            text("access_key_id"),
            text("secret_access_key")
        );
        assert_eq!(credentials, text("aws_credentials"), "{name}");
        let settings = AwsSettings { access_keys: vec![key.clone()], ..AwsSettings::default() };
        let opened = Credentials::open(&settings, Some(&store), |n| n == "admin").unwrap();
        assert_eq!(opened.lookup(&key.access_key_id), Some(("admin", text("secret_access_key").as_bytes())), "{name}");
        let moved =
            kms::admin::aws::settings::AccessKeyConfig { access_key_id: "AKIAOTHERKEY2345678A".into(), ..key.clone() };
        let settings = AwsSettings { access_keys: vec![moved], ..AwsSettings::default() };
        let err = Credentials::open(&settings, Some(&store), |n| n == "admin").unwrap_err();
        assert!(err.contains("AKIAOTHERKEY2345678A") && err.contains("does not open"), "{name}: {err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
