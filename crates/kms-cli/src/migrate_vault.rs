//! `kms migrate vault-transit KEY...`: adopts Transit keys that RustFS (or any other tool) made
//! in the mount of a Vault-backed kms, one explicit, authorized and audited `POST /kms/v1/adopt`
//! per key (operation `adopt_key`). The server checks each key's Transit parameters and refuses,
//! with a reason, a type other than `aes256-gcm96`, an exportable key, one with plaintext
//! backup, or a derived one (docs/migration.md). A dry run unless `--commit`; one line per key;
//! a key adopted earlier is skipped, so a stopped run is resumed by running it again.

use clap::Args;
use http::Method;
use kms::adopt::{AdoptKeyRequest, AdoptKeyResponse, AdoptOutcome};
use kms::types::Tags;
use serde_json::json;

use crate::cli::GlobalArgs;
use crate::client::{CliError, Client, exit};

/// Adopt Transit keys made by RustFS or any other tool in the kms server's Transit mount.
///
/// Each KEY is a Transit key name; it becomes a kms key of the same id (state enabled, origin
/// kms, current version = Transit's latest). The server refuses, with a reason, a key whose
/// type is not aes256-gcm96, or that is exportable, allows plaintext backup or is derived, and
/// any id kms already has. A DRY RUN unless --commit. Keys adopted earlier are skipped.
/// Needs the `adopt_key` grant.
#[derive(Debug, Args)]
pub(crate) struct VaultTransitArgs {
    /// Transit key names to adopt.
    #[arg(required = true, value_name = "KEY")]
    pub(crate) keys: Vec<String>,
    /// Description recorded for every adopted key.
    #[arg(long)]
    pub(crate) description: Option<String>,
    /// Tag recorded for every adopted key (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub(crate) tags: Vec<String>,
    /// Adopt the keys; without it nothing is written.
    #[arg(long)]
    pub(crate) commit: bool,
}

/// Runs `kms migrate vault-transit`.
pub(crate) async fn run(client: &Client, global: &GlobalArgs, args: VaultTransitArgs) -> Result<(), CliError> {
    let tags: Tags = crate::pairs::pairs("--tag", &args.tags)?;
    let mut refused = 0usize;
    for key_id in &args.keys {
        let request = AdoptKeyRequest {
            key_id: key_id.clone(),
            commit: args.commit,
            description: args.description.clone(),
            tags: tags.clone(),
        };
        let (action, detail) =
            match client.call::<AdoptKeyResponse>(Method::POST, "/kms/v1/adopt", Some(&request)).await {
                Ok(answer) => describe(&answer),
                Err(e) if e.code == exit::AUTH || e.code == exit::SERVER || e.code == exit::USAGE => return Err(e),
                Err(e) => ("refused", e.message),
            };
        if action == "refused" {
            refused += 1;
        }
        if global.json {
            println!("{}", json!({"key_id": key_id, "action": action, "detail": detail}));
        } else {
            println!("{key_id}\t{action}\t{detail}");
        }
    }
    if !args.commit {
        let note = "dry run: nothing was adopted; run again with --commit to adopt the keys marked `adopt`";
        println!("{}", if global.json { json!({"dry_run": true}).to_string() } else { note.to_owned() });
    }
    match refused {
        0 => Ok(()),
        n => Err(CliError::new(exit::FAILED, format!("{n} key(s) not adopted (see above)"))),
    }
}

fn describe(answer: &AdoptKeyResponse) -> (&'static str, String) {
    let versions = || {
        answer
            .key_metadata
            .as_ref()
            .map_or_else(String::new, |m| format!("{} version(s), created {}", m.current_version, m.creation_date))
    };
    match answer.outcome {
        AdoptOutcome::Adoptable => ("adopt", versions()),
        AdoptOutcome::Adopted => ("adopted", versions()),
        AdoptOutcome::AlreadyAdopted => ("skip", "already adopted".to_owned()),
        AdoptOutcome::Refused => ("refused", answer.reason.clone().unwrap_or_default()),
    }
}
