//! `kms backup` (asks the running server for a sealed bundle) and `kms restore` (writes a
//! bundle into an empty data folder, offline). The bundle format: docs/formats.md, "Backup
//! bundle".

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use http::Method;
use kms::admin::store::{ConfigStore, STATE_FILE};
use kms::config::{BackendConfig, LocalConfig, MasterKeySource};
use kms::error::KmsError;
use kms::local::LocalBackend;

use crate::cli::{BackupArgs, GlobalArgs, RestoreArgs};
use crate::client::{CliError, Client, exit};
use crate::serve::{DEFAULT_DATA_DIR, MASTER_KEY_FILE};

/// The largest bundle file `kms restore` reads (the server sends what it holds).
const MAX_BUNDLE_BYTES: u64 = 16 << 30;

/// `POST /kms/v1/backup`, written to `--out` atomically (0600).
pub(crate) async fn backup(client: &Client, global: &GlobalArgs, args: BackupArgs) -> Result<(), CliError> {
    let (status, bytes) = client.send(Method::POST, "/kms/v1/backup", None).await?;
    if !status.is_success() {
        return Err(client.refusal(status, &bytes));
    }
    kms::fs_trust::write_private_file(&args.out, &bytes)
        .map_err(|e| CliError::local(format!("cannot write {}: {e}", args.out.display())))?;
    report(global, &serde_json::json!({"out": args.out, "bytes": bytes.len()}), || {
        format!(
            "wrote {} ({} bytes); keep the master key apart from it: restoring needs it",
            args.out.display(),
            bytes.len()
        )
    });
    Ok(())
}

/// Restores `args.file` into the data folder's key store, found as `kms serve` finds it: the
/// saved service configuration's local backend if the folder has one, else `DIR/keys` with the
/// master key `DIR/master.key`; `--master-key-file` overrides the master key.
pub(crate) fn restore(global: &GlobalArgs, args: RestoreArgs) -> Result<(), CliError> {
    let data_dir = args.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let (key_dir, saved_master_key) = match saved_local_config(&data_dir)? {
        Some(local) => (local.key_dir, Some(local.master_key)),
        None => (data_dir.join("keys"), None),
    };
    let master_key = match (args.master_key_file, saved_master_key) {
        (Some(path), _) => MasterKeySource::File { path },
        (None, Some(saved)) => saved,
        (None, None) => MasterKeySource::File { path: data_dir.join(MASTER_KEY_FILE) },
    };
    if let MasterKeySource::File { path } = &master_key
        && !path.exists()
    {
        return Err(CliError::usage(format!(
            "no master key at {}: put back the master key the backup was made under (or give --master-key-file)",
            path.display()
        )));
    }
    let size = std::fs::metadata(&args.file)
        .map_err(|e| CliError::local(format!("cannot read {}: {e}", args.file.display())))?
        .len();
    if size > MAX_BUNDLE_BYTES {
        return Err(CliError::local(format!("{} is larger than any bundle this kms reads", args.file.display())));
    }
    let bundle =
        std::fs::read(&args.file).map_err(|e| CliError::local(format!("cannot read {}: {e}", args.file.display())))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&data_dir)
        .map_err(|e| CliError::local(format!("cannot create {}: {e}", data_dir.display())))?;
    let summary = LocalBackend::restore_into(&key_dir, &master_key, &bundle).map_err(restore_error)?;
    report(global, &serde_json::json!({"key_dir": key_dir, "keys": summary.keys, "aliases": summary.aliases}), || {
        format!(
            "restored {} key(s) and {} alias(es) into {}; start the server with `kms serve --data-dir {}`",
            summary.keys,
            summary.aliases,
            key_dir.display(),
            data_dir.display()
        )
    });
    Ok(())
}

/// The local backend of the folder's saved service configuration, if it has one. A folder
/// whose saved service is another backend has nothing to restore a bundle into.
fn saved_local_config(data_dir: &Path) -> Result<Option<LocalConfig>, CliError> {
    if !data_dir.join(STATE_FILE).exists() {
        return Ok(None);
    }
    let store = ConfigStore::open(data_dir, None).map_err(|e| CliError::local(format!("saved state: {e}")))?;
    let Some(state) = store.load().map_err(|e| CliError::local(format!("saved state: {e}")))? else {
        return Ok(None);
    };
    match state.config.backend_config {
        BackendConfig::Local(local) => Ok(Some(local)),
        other => Err(CliError::usage(format!(
            "the service saved in {} uses the {} backend: its keys are backed up by that backend \
             (docs/vault.md), not by kms backup",
            data_dir.display(),
            other.backend().as_str()
        ))),
    }
}

fn restore_error(err: KmsError) -> CliError {
    let code = match err {
        KmsError::InvalidRequest { .. } | KmsError::Configuration { .. } => exit::FAILED,
        _ => exit::SERVER,
    };
    CliError::new(code, format!("restore refused: {err}"))
}

fn report(global: &GlobalArgs, json: &serde_json::Value, human: impl FnOnce() -> String) {
    if global.json {
        println!("{json}");
    } else {
        println!("{}", human());
    }
}
