//! `kms alias create|update|delete|list`: aliases (`alias/team/app`) through `/kms/v1/aliases`.
//! Every other command that takes a key id takes an alias too (see `commands::segment`).

use clap::Subcommand;
use http::Method;
use kms::admin::aliases::{AliasTargetBody, key_segment};
use kms::alias::{CreateAliasRequest, validate_alias_name};
use serde_json::Value;

use crate::cli::GlobalArgs;
use crate::client::{CliError, Client};
use crate::commands::pages;
use crate::output;

const ALIAS_HELP: &str = "The alias: `alias/` and 1-250 letters, digits, `/`, `_`, `-` (`alias/aws/` is reserved)";
const TARGET_HELP: &str = "The key id it points at (a key, not an alias)";

/// Aliases: names that point at a key and can be moved to another.
#[derive(Debug, Subcommand)]
pub(crate) enum AliasCommand {
    /// Create an alias of a key.
    Create {
        #[arg(help = ALIAS_HELP)]
        alias_name: String,
        #[arg(help = TARGET_HELP)]
        target_key_id: String,
    },
    /// Point an existing alias at another key.
    Update {
        #[arg(help = ALIAS_HELP)]
        alias_name: String,
        #[arg(help = TARGET_HELP)]
        target_key_id: String,
    },
    /// Delete an alias (the key stays).
    Delete {
        #[arg(help = ALIAS_HELP)]
        alias_name: String,
    },
    /// List aliases, in name order.
    List {
        /// Only the aliases of this key.
        #[arg(long)]
        key_id: Option<String>,
        /// Page size (1-100).
        #[arg(long)]
        limit: Option<u32>,
        /// Start after this alias.
        #[arg(long)]
        marker: Option<String>,
        /// Follow every page.
        #[arg(long)]
        all: bool,
    },
}

/// Runs one alias command.
pub(crate) async fn run(client: &Client, global: &GlobalArgs, cmd: AliasCommand) -> Result<(), CliError> {
    let show = |v: &Value| if global.json { output::json(v) } else { output::fields(v) };
    match cmd {
        AliasCommand::Create { alias_name, target_key_id } => {
            checked(&alias_name)?;
            let request = CreateAliasRequest { alias_name, target_key_id };
            show(&client.call(Method::POST, "/kms/v1/aliases", Some(&request)).await?);
        }
        AliasCommand::Update { alias_name, target_key_id } => {
            let path = format!("/kms/v1/aliases/{}", checked(&alias_name)?);
            show(&client.call(Method::PUT, &path, Some(&AliasTargetBody { target_key_id })).await?);
        }
        AliasCommand::Delete { alias_name } => {
            let path = format!("/kms/v1/aliases/{}", checked(&alias_name)?);
            show(&client.call(Method::DELETE, &path, None::<&()>).await?);
        }
        AliasCommand::List { key_id, limit, marker, all } => list(client, global, key_id, limit, marker, all).await?,
    }
    Ok(())
}

async fn list(
    client: &Client,
    global: &GlobalArgs,
    key_id: Option<String>,
    limit: Option<u32>,
    marker: Option<String>,
    all: bool,
) -> Result<(), CliError> {
    let mut query: Vec<String> = key_id.iter().map(|k| format!("key_id={}", key_segment(k))).collect();
    query.extend(limit.map(|l| format!("limit={l}")));
    let marker = marker.as_deref().map(checked).transpose()?;
    let (aliases, last) = pages(client, "/kms/v1/aliases", query, marker, all, "aliases").await?;
    if global.json {
        let mut v = last;
        v["aliases"] = Value::Array(aliases);
        output::json(&v);
    } else {
        let rows: Vec<Vec<String>> = aliases
            .iter()
            .map(|a| {
                vec![
                    output::cell(&a["alias_name"]),
                    output::cell(&a["target_key_id"]),
                    output::cell(&a["last_updated_date"]),
                ]
            })
            .collect();
        output::table(&["ALIAS", "KEY ID", "UPDATED"], &rows);
        if let (false, true, Some(m)) =
            (all, last["truncated"].as_bool().unwrap_or(false), last["next_marker"].as_str())
        {
            eprintln!("(more aliases: --marker {m}, or --all)");
        }
    }
    Ok(())
}

/// Checks an alias name before it is sent, and returns it as a path segment.
fn checked(alias_name: &str) -> Result<String, CliError> {
    validate_alias_name("alias_name", alias_name).map_err(|e| CliError::usage(e.to_string()))?;
    Ok(key_segment(alias_name))
}
