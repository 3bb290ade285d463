//! AWS access keys from the command line: `kms token aws` and the bootstrap admin's key, which
//! `kms serve` creates on first start in `<data_dir>/aws-credentials` (the AWS shared-credentials
//! format, mode 0600) so that the AWS CLI and SDKs work out of the box.

use std::fs;
use std::path::Path;

use kms::admin::aws::settings::{AccessKeyConfig, generate_access_key};
use kms::admin::store::{ConfigStore, write_private_file};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::client::CliError;

/// The client's copy of the bootstrap admin's key (`[default]` profile).
pub(crate) const AWS_CREDENTIALS_FILE: &str = "aws-credentials";
/// The server's copy: the key id and the sealed secret.
pub(crate) const ADMIN_AWS_KEY_FILE: &str = "admin.aws-key.json";

/// A new access key for `identity`, its secret sealed with `store`'s seal key; and the secret.
pub(crate) fn new_access_key(
    store: &ConfigStore,
    identity: &str,
) -> Result<(AccessKeyConfig, Zeroizing<String>), CliError> {
    let (access_key_id, secret) = generate_access_key();
    let sealed = store
        .seal_secret(&secret, &AccessKeyConfig::seal_field(&access_key_id))
        .map_err(|e| CliError::local(format!("cannot seal the secret access key: {e}")))?;
    Ok((AccessKeyConfig { identity: identity.to_owned(), access_key_id, secret_access_key: sealed }, secret))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedKey {
    access_key_id: String,
    secret_access_key: String,
}

/// The bootstrap admin's access key: read from the data folder, or created on first start
/// (then `aws-credentials` is written too). Returns the key and whether it was just created.
pub(crate) fn bootstrap_access_key(
    data_dir: &Path,
    store: &ConfigStore,
    identity: &str,
) -> Result<(AccessKeyConfig, bool), CliError> {
    let saved_path = data_dir.join(ADMIN_AWS_KEY_FILE);
    let fail = |path: &Path, e: &dyn std::fmt::Display| CliError::local(format!("{}: {e}", path.display()));
    match fs::read(&saved_path) {
        Ok(bytes) => {
            let saved: SavedKey = serde_json::from_slice(&bytes).map_err(|e| fail(&saved_path, &e))?;
            let key = AccessKeyConfig {
                identity: identity.to_owned(),
                access_key_id: saved.access_key_id,
                secret_access_key: saved.secret_access_key,
            };
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (key, secret) = new_access_key(store, identity)?;
            let credentials_path = data_dir.join(AWS_CREDENTIALS_FILE);
            let credentials = Zeroizing::new(format!(
                "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                key.access_key_id,
                secret.as_str()
            ));
            write_private_file(&credentials_path, credentials.as_bytes()).map_err(|e| fail(&credentials_path, &e))?;
            let saved =
                SavedKey { access_key_id: key.access_key_id.clone(), secret_access_key: key.secret_access_key.clone() };
            let bytes = serde_json::to_vec_pretty(&saved).expect("a saved key serializes");
            write_private_file(&saved_path, &bytes).map_err(|e| fail(&saved_path, &e))?;
            Ok((key, true))
        }
        Err(e) => Err(fail(&saved_path, &e)),
    }
}

#[cfg(test)]
mod tests {
    use kms::admin::aws::settings::{AwsSettings, Credentials};

    use super::*;

    #[test]
    fn the_bootstrap_key_is_created_once_and_opens_on_the_server() {
        let dir = std::env::temp_dir().join(format!("kms-cli-aws-key-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let store = ConfigStore::open(&dir, None).unwrap();
        let (first, created) = bootstrap_access_key(&dir, &store, "admin").unwrap();
        assert!(created);
        let credentials = fs::read_to_string(dir.join(AWS_CREDENTIALS_FILE)).unwrap();
        assert!(credentials.starts_with("[default]\naws_access_key_id = AKIA"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(AWS_CREDENTIALS_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let secret = credentials.lines().find_map(|l| l.strip_prefix("aws_secret_access_key = ")).unwrap();
        // The server's copy holds the secret sealed only.
        let saved = fs::read_to_string(dir.join(ADMIN_AWS_KEY_FILE)).unwrap();
        assert!(!saved.contains(secret) && saved.contains("sealed:v1:"));
        let (second, created) = bootstrap_access_key(&dir, &store, "admin").unwrap();
        assert!(!created);
        assert_eq!(second, first);
        let settings = AwsSettings { access_keys: vec![second], ..AwsSettings::default() };
        let opened = Credentials::open(&settings, Some(&store), |n| n == "admin").unwrap();
        assert_eq!(opened.lookup(&first.access_key_id), Some(("admin", secret.as_bytes())));
        fs::remove_dir_all(&dir).unwrap();
    }
}
