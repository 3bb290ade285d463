//! `kms migrate rustfs-local`: imports every key of a RustFS local key directory into the
//! running server, keeping key ids, states, descriptions, tags and creation dates
//! (docs/migration.md).
//!
//! The directory is read here (records parsed and opened by `kms::crypto::rustfs`); each key
//! travels to the server only as a `POST /kms/v1/import` body over the admin API (refused over
//! plain http to another host), never to disk. A dry run unless `--commit`: both print one line
//! per key saying what happens to it. Never overwrites: a key id the server already holds is
//! skipped (reported as already migrated when it is an imported key of the same creation
//! date, else as a conflict), so a stopped run is resumed by running it again.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use http::{Method, StatusCode};
use kms::crypto::rustfs::record::{KeyRecord, KeyStatus, KeyUsage as RustfsUsage, OpenedWith, RecordKeks, SALT_LEN};
use kms::crypto::rustfs::{MasterKeyString, RustfsError};
use kms::import::ImportKeyRequest;
use kms::secret::{SecretBytes, SecretString};
use kms::types::{KeyMetadata, KeyOrigin, KeyState, KeyUsage};
use serde_json::json;
use zeroize::Zeroizing;

use crate::cli::GlobalArgs;
use crate::client::{CliError, Client, exit};

/// The largest record file read (RustFS's records are well under 1 KiB).
const MAX_RECORD_BYTES: u64 = 64 << 10;
/// RustFS's marker of an interrupted restore: its own startup fails closed on it.
const RESTORE_MARKER: &str = ".restore-commit.json";
const SALT_FILE: &str = ".master-key.salt";

/// Import keys from another KMS into the running server.
#[derive(Debug, Subcommand)]
pub(crate) enum MigrateCommand {
    RustfsLocal(RustfsLocalArgs),
    VaultTransit(crate::migrate_vault::VaultTransitArgs),
}

/// Import every key of a RustFS local key directory (RUSTFS_KMS_LOCAL_KEY_DIR).
///
/// Key ids, states (Active → enabled, Disabled → disabled, PendingDeletion → pending_deletion
/// with its deletion date), descriptions, tags (RustFS's `metadata`) and creation dates are
/// kept; each key's material becomes version 1 of a kms key with origin `external`. Prints
/// what happens to each key. A DRY RUN unless --commit. A key id the server already holds is
/// never overwritten: run it again after a failure and it resumes. Needs the `describe_key`
/// grant, and `import_key` with --commit. Stop RustFS first: keys it creates afterwards are
/// not seen.
#[derive(Debug, Args)]
pub(crate) struct RustfsLocalArgs {
    /// The RustFS key directory.
    #[arg(long)]
    pub(crate) from: PathBuf,
    /// RustFS's master-key string (prefer RUSTFS_KMS_LOCAL_MASTER_KEY or --master-key-file:
    /// arguments are visible to other users). Not needed for a directory RustFS used without one.
    #[arg(long, env = "RUSTFS_KMS_LOCAL_MASTER_KEY", hide_env_values = true, value_parser = parse_secret)]
    pub(crate) master_key: Option<SecretString>,
    /// A file holding RustFS's master-key string (one trailing newline is ignored).
    #[arg(long, conflicts_with = "master_key")]
    pub(crate) master_key_file: Option<PathBuf>,
    /// Import the keys; without it nothing is written.
    #[arg(long)]
    pub(crate) commit: bool,
}

fn parse_secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

/// What happens (or happened) to one key.
enum Outcome {
    /// Will be imported (dry run) or was imported.
    Import(Box<ImportKeyRequest>, OpenedWith),
    /// Already in kms as this migration made it.
    AlreadyMigrated,
    /// Not migrated, with why; `failed` makes the run exit non-zero.
    Skip { why: String, failed: bool },
}

/// Runs `kms migrate ...`.
pub(crate) async fn run(client: &Client, global: &GlobalArgs, command: MigrateCommand) -> Result<(), CliError> {
    let args = match command {
        MigrateCommand::RustfsLocal(args) => args,
        MigrateCommand::VaultTransit(args) => return crate::migrate_vault::run(client, global, args).await,
    };
    if args.commit && !crate::token::is_loopback_url(&global.url) && !global.url.starts_with("https://") {
        return Err(CliError::usage(format!(
            "--commit sends key material: use an https:// URL (or run on the server's machine), not {}",
            global.url
        )));
    }
    let master_key = master_key(&args)?;
    let dir = read_dir(&args.from)?;
    let keks = match &master_key {
        Some(master_key) => {
            Some(RecordKeks::derive(master_key, dir.salt.as_deref()).map_err(|e| refusal(&dir.path, e))?)
        }
        None => None,
    };
    if dir.salt.is_none() && master_key.is_some() {
        eprintln!("kms: {} has no {SALT_FILE}: only legacy and plaintext records can open", dir.path.display());
    }
    let mut failures = 0usize;
    for (key_id, bytes) in &dir.records {
        let outcome = match plan(key_id, bytes, keks.as_ref()) {
            Ok(outcome) => outcome,
            Err(why) => Outcome::Skip { why, failed: true },
        };
        let outcome = match outcome {
            Outcome::Import(request, opened_with) => settle(client, &args, *request, opened_with)
                .await
                .unwrap_or_else(|e| Outcome::Skip { why: e.message, failed: true }),
            other => other,
        };
        if matches!(outcome, Outcome::Skip { failed: true, .. }) {
            failures += 1;
        }
        report(global, key_id, &outcome, args.commit);
    }
    if !args.commit {
        println!("{}", if global.json { json!({"dry_run": true}).to_string() } else { DRY_RUN_NOTE.to_owned() });
    }
    match failures {
        0 => Ok(()),
        n => Err(CliError::new(exit::FAILED, format!("{n} key(s) not migrated (see above); fix them and run again"))),
    }
}

const DRY_RUN_NOTE: &str = "dry run: nothing was imported; run again with --commit to import the keys marked `import`";

fn master_key(args: &RustfsLocalArgs) -> Result<Option<MasterKeyString>, CliError> {
    if let Some(key) = &args.master_key {
        return Ok(Some(MasterKeyString::new(key.expose_secret().to_owned())));
    }
    let Some(path) = &args.master_key_file else { return Ok(None) };
    let mut text = Zeroizing::new(String::new());
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| CliError::local(format!("cannot read {}: {e}", path.display())))?;
    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
    Ok(Some(MasterKeyString::new(trimmed.to_owned())))
}

/// A RustFS key directory as read from disk: its salt and every `<key_id>.key`, by key id.
struct KeyDir {
    path: PathBuf,
    salt: Option<Vec<u8>>,
    records: Vec<(String, Zeroizing<Vec<u8>>)>,
}

fn read_dir(path: &Path) -> Result<KeyDir, CliError> {
    let cannot = |e: std::io::Error| CliError::local(format!("cannot read {}: {e}", path.display()));
    if path.join(RESTORE_MARKER).exists() {
        return Err(CliError::local(format!(
            "{} holds {RESTORE_MARKER}: a RustFS restore was interrupted; finish it in RustFS first",
            path.display()
        )));
    }
    let salt = match std::fs::read(path.join(SALT_FILE)) {
        Ok(salt) if salt.len() == SALT_LEN => Some(salt),
        Ok(_) => return Err(CliError::local(format!("{SALT_FILE} in {} is not {SALT_LEN} bytes", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(cannot(e)),
    };
    let mut records = Vec::new();
    for entry in std::fs::read_dir(path).map_err(cannot)? {
        let entry = entry.map_err(cannot)?;
        let name = entry.file_name();
        let Some(key_id) = name.to_str().and_then(|n| n.strip_suffix(".key")) else { continue };
        let file = entry.path();
        let meta = std::fs::symlink_metadata(&file).map_err(cannot)?;
        if !meta.is_file() || meta.len() > MAX_RECORD_BYTES {
            return Err(CliError::local(format!("{} is not a RustFS key record file", file.display())));
        }
        let bytes = Zeroizing::new(std::fs::read(&file).map_err(cannot)?);
        records.push((key_id.to_owned(), bytes));
    }
    records.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(KeyDir { path: path.to_owned(), salt, records })
}

/// Parses and opens one record and says what to do with it (without asking the server).
fn plan(key_id: &str, bytes: &[u8], keks: Option<&RecordKeks>) -> Result<Outcome, String> {
    let record = KeyRecord::parse(key_id, bytes).map_err(|e| e.to_string())?;
    let key_state = match record.status {
        KeyStatus::Active => KeyState::Enabled,
        KeyStatus::Disabled => KeyState::Disabled,
        KeyStatus::PendingDeletion if record.deletion_date.is_some() => KeyState::PendingDeletion,
        KeyStatus::PendingDeletion => return Err("PendingDeletion without a deletion_date".into()),
        KeyStatus::Deleted => {
            return Ok(Outcome::Skip { why: "a deletion tombstone: the key is gone in RustFS".into(), failed: false });
        }
    };
    if record.usage == RustfsUsage::SignVerify {
        return Err("usage SignVerify: kms keys only encrypt and decrypt".into());
    }
    let (material, opened_with) = record.open(keks).map_err(|e| match e {
        RustfsError::Unauthenticated => {
            "the material did not open: wrong master-key string, or an altered record".into()
        }
        other => other.to_string(),
    })?;
    let request = ImportKeyRequest {
        key_id: record.key_id.clone(),
        material: SecretBytes::new(material.expose_secret().to_vec()),
        key_state,
        key_usage: KeyUsage::EncryptDecrypt,
        description: record.description.clone(),
        tags: record.tags.clone(),
        creation_date: record.created_at,
        deletion_date: record.deletion_date.filter(|_| key_state == KeyState::PendingDeletion),
    };
    request.validate().map_err(|e| e.to_string())?;
    Ok(Outcome::Import(Box::new(request), opened_with))
}

/// Checks the server for the key id; imports it with --commit if it is free.
async fn settle(
    client: &Client,
    args: &RustfsLocalArgs,
    request: ImportKeyRequest,
    opened_with: OpenedWith,
) -> Result<Outcome, CliError> {
    let path = format!("/kms/v1/keys/{}", request.key_id);
    let (status, body) = client.send(Method::GET, &path, None).await?;
    match status {
        StatusCode::NOT_FOUND => {}
        s if s.is_success() => {
            let existing: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| CliError::new(exit::SERVER, format!("unexpected response: {e}")))?;
            let existing: KeyMetadata = serde_json::from_value(existing["key_metadata"].clone())
                .map_err(|e| CliError::new(exit::SERVER, format!("unexpected response: {e}")))?;
            return Ok(if existing.origin == KeyOrigin::External && existing.creation_date == request.creation_date {
                Outcome::AlreadyMigrated
            } else {
                Outcome::Skip { why: "a different kms key has this id; it is left alone".into(), failed: true }
            });
        }
        s => return Err(client.refusal(s, &body)),
    }
    if args.commit {
        let _: serde_json::Value = client.call(Method::POST, "/kms/v1/import", Some(&request)).await?;
    }
    Ok(Outcome::Import(Box::new(request), opened_with))
}

fn report(global: &GlobalArgs, key_id: &str, outcome: &Outcome, committed: bool) {
    let (action, detail) = match outcome {
        Outcome::Import(request, opened_with) => (
            if committed { "imported" } else { "import" },
            format!(
                "state {}, {} tag(s), created {}, material opened with {opened_with:?}",
                state_name(request.key_state),
                request.tags.len(),
                request.creation_date
            ),
        ),
        Outcome::AlreadyMigrated => ("skip", "already migrated".to_owned()),
        Outcome::Skip { why, failed } => (if *failed { "refused" } else { "skip" }, why.clone()),
    };
    if global.json {
        println!("{}", json!({"key_id": key_id, "action": action, "detail": detail}));
    } else {
        println!("{key_id}\t{action}\t{detail}");
    }
}

fn state_name(state: KeyState) -> &'static str {
    match state {
        KeyState::Disabled => "disabled",
        KeyState::PendingDeletion => "pending_deletion",
        _ => "enabled",
    }
}

fn refusal(path: &Path, error: RustfsError) -> CliError {
    CliError::local(format!("{}: {error}", path.display()))
}
