//! The command line (clap).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use kms::secret::SecretString;

/// A key-management server and its client.
///
/// Start a server with `kms serve` (local key store under ./kms-data, listening on
/// 127.0.0.1:7373). The first start writes an admin token to ./kms-data/admin.token; client
/// commands on the same machine find it there, or take --token / KMS_TOKEN.
///
/// Exit codes: 0 success, 1 request refused or local failure, 2 usage error, 3 authentication
/// or authorization failure, 4 not found, 5 server error or server unreachable.
#[derive(Debug, Parser)]
#[command(name = "kms", version, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The command line as clap shows it: the client options are hidden from `kms serve`, which
/// takes none of them (they stay global so `kms key list --json` works).
pub(crate) fn command() -> clap::Command {
    // `serve` gets hidden, non-global copies of the client options: clap then does not
    // propagate the global ones into it, and [`parse`] can tell that one was given.
    let client = GlobalArgs::augment_args(clap::Command::new("client"));
    Cli::command().mut_subcommand("serve", |serve| {
        // Re-added subcommands go last; keep `serve` first in the listings.
        client
            .get_arguments()
            .fold(serve.display_order(0), |serve, arg| serve.arg(arg.clone().global(false).hide(true)))
    })
}

/// Parses a command line; a client option given to `kms serve` is a usage error.
pub(crate) fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut command = command();
    let mut matches = command.try_get_matches_from_mut(args)?;
    if let Some(serve) = matches.subcommand_matches("serve") {
        for id in CLIENT_ONLY_ARGS {
            if serve.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
                return Err(command.error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("--{} is an option of the client commands, not of `kms serve`", id.replace('_', "-")),
                ));
            }
        }
    }
    Cli::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut command))
}

/// Keeps a token given on the command line out of `Debug` output and zeroizes it on drop.
fn parse_secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

/// Options of the client commands (hidden from `kms serve`, which takes none of them).
#[derive(Debug, Args)]
#[command(next_help_heading = "Client options")]
pub(crate) struct GlobalArgs {
    /// Server URL.
    #[arg(long, env = "KMS_URL", hide_env_values = true, default_value = DEFAULT_URL, global = true)]
    pub(crate) url: String,
    /// Bearer token (prefer KMS_TOKEN or --token-file: arguments are visible to other users).
    #[arg(long, env = "KMS_TOKEN", hide_env_values = true, global = true, value_parser = parse_secret)]
    pub(crate) token: Option<SecretString>,
    /// File holding the bearer token [default: ./kms-data/admin.token, only when --url is a
    /// loopback address].
    #[arg(long, env = "KMS_TOKEN_FILE", hide_env_values = true, global = true)]
    pub(crate) token_file: Option<PathBuf>,
    /// PEM CA bundle to verify an https server with (instead of the system roots).
    #[arg(long, env = "KMS_CA_CERT", hide_env_values = true, global = true)]
    pub(crate) ca_cert: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Say on stderr where the token came from and what is sent where.
    #[arg(long, short = 'v', global = true)]
    pub(crate) verbose: bool,
}

/// The server URL when neither --url nor KMS_URL is given.
pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:7373";

/// The ids of [`GlobalArgs`], which `kms serve` hides and refuses.
pub(crate) const CLIENT_ONLY_ARGS: [&str; 6] = ["url", "token", "token_file", "ca_cert", "json", "verbose"];

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    Serve(ServeArgs),
    /// Manage master keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage aliases (names that point at a key).
    #[command(subcommand)]
    Alias(crate::alias::AliasCommand),
    /// Generate a data key under a master key.
    Datakey(DatakeyArgs),
    /// Show the service status.
    Status,
    /// Control the service: configuration, start, stop.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Encrypt a file (or stdin) with a fresh data key (envelope encryption, streaming).
    Encrypt(EncryptArgs),
    Decrypt(DecryptArgs),
    Rewrap(RewrapArgs),
    Backup(BackupArgs),
    Restore(RestoreArgs),
    #[command(subcommand)]
    Migrate(crate::migrate::MigrateCommand),
    /// Bearer tokens for the server configuration.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The server's configuration file: a complete example, or a check of one.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script (e.g. `kms completions bash > /etc/bash_completion.d/kms`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; e.g. `kms man | man -l -`).
    Man,
}

/// Run the kms server.
///
/// With no options: keys on local disk under ./kms-data, listening on 127.0.0.1:7373 (loopback
/// only). On the first start a master key (./kms-data/master.key) and an admin token
/// (./kms-data/admin.token) are created, each mode 0600. Back up master.key apart from the data
/// folder: it opens every key, and for production keep it elsewhere (docs/deployment.md).
///
/// Settings come from, highest first: command-line flags, KMS_* environment variables, the
/// TOML file given with --config (KMS_CONFIG), built-in defaults. Every option of the file
/// ([server], [server.tls], [[server.identities]], [kms]) with its default and its variable:
/// `kms config example`; check a file before using it: `kms config check FILE`.
///
/// The service configuration (backend and its settings) can change at run time through the
/// API (POST /kms/v1/configure, /reconfigure); it is saved in the data folder, secrets sealed,
/// and resumed on the next start.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "KMS_CONFIG", hide_env_values = true)]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7373].
    #[arg(long, env = "KMS_LISTEN", hide_env_values = true)]
    pub(crate) listen: Option<SocketAddr>,
    /// Data folder [default: ./kms-data].
    #[arg(long, env = "KMS_DATA_DIR", hide_env_values = true)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Audit log file (one JSON line per request).
    #[arg(long, env = "KMS_AUDIT_LOG", hide_env_values = true)]
    pub(crate) audit_log: Option<PathBuf>,
    /// File with the base64 32-byte key that seals secrets in the saved state.
    #[arg(long, env = "KMS_SEAL_KEY_FILE", hide_env_values = true)]
    pub(crate) seal_key_file: Option<PathBuf>,
    /// Largest request body in bytes.
    #[arg(long, env = "KMS_MAX_BODY_BYTES", hide_env_values = true)]
    pub(crate) max_body_bytes: Option<usize>,
    /// Most concurrent connections.
    #[arg(long, env = "KMS_MAX_CONNECTIONS", hide_env_values = true)]
    pub(crate) max_connections: Option<usize>,
    /// Log filter, e.g. `info` or `kms_admin=debug`.
    #[arg(long, env = "KMS_LOG", hide_env_values = true)]
    pub(crate) log: Option<String>,
    /// Let the process dump core (by default it is made non-dumpable, RLIMIT_CORE 0: a core
    /// file would hold every key in the clear).
    #[arg(long, env = "KMS_ALLOW_CORE_DUMPS", hide_env_values = true)]
    pub(crate) allow_core_dumps: bool,
}

/// The help of every `<KEY_ID>` argument.
const KEY_ID_HELP: &str =
    "The key's id (1-256 letters, digits, `-`, `_`, `.`; as printed by `kms key create`), or an alias (`alias/...`)";

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Create a master key.
    Create {
        /// Key id (letters, digits, `-`, `_`, `.`) [default: generated].
        #[arg(long)]
        name: Option<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        /// Tag as NAME=VALUE (repeatable).
        #[arg(long = "tag", value_name = "NAME=VALUE")]
        tags: Vec<String>,
        /// Where the material comes from: `kms` generates it; an `external` key waits
        /// (pending_import) for `kms key import` (docs/byok.md).
        #[arg(long, value_enum, default_value_t = Origin::Kms)]
        origin: Origin,
    },
    /// Import key material (BYOK) into an external key: asks for import parameters, wraps the
    /// file's 32 bytes under the returned RSA key (RSAES-OAEP-SHA-256) here, and sends only the
    /// wrapped bytes (docs/byok.md).
    Import {
        #[arg(help = KEY_ID_HELP)]
        key_id: String,
        /// File holding exactly 32 bytes of raw AES-256 material.
        #[arg(long, value_name = "PATH")]
        material_file: PathBuf,
        /// When the material expires (RFC 3339); the key is then pending_import again.
        #[arg(long, value_name = "RFC3339")]
        valid_to: Option<String>,
        /// Add the material as a new version of a key that has material.
        #[arg(long)]
        new_version: bool,
        /// The RSA wrapping key's size.
        #[arg(long, value_enum, default_value_t = WrappingSpec::Rsa4096)]
        wrapping_key_spec: WrappingSpec,
    },
    /// Delete an external key's imported material (the key becomes pending_import; the same
    /// material can be imported again).
    DeleteMaterial {
        #[arg(help = KEY_ID_HELP)]
        key_id: String,
    },
    /// List keys.
    List {
        /// Page size (1-1000).
        #[arg(long)]
        limit: Option<u32>,
        /// Start after this key id.
        #[arg(long)]
        marker: Option<String>,
        /// Follow every page.
        #[arg(long)]
        all: bool,
    },
    /// Show a key's metadata.
    Describe {
        #[arg(help = KEY_ID_HELP)]
        key_id: String,
    },
    /// Enable a disabled key.
    Enable {
        #[arg(help = KEY_ID_HELP)]
        key_id: String,
    },
    /// Disable a key (it stops encrypting until enabled).
    Disable {
        #[arg(help = KEY_ID_HELP)]
        key_id: String,
    },
    /// Make a new key version current.
    Rotate {
        #[arg(help = KEY_ID_HELP)]
        key_id: String,
    },
    /// Schedule a key's deletion.
    Delete {
        #[arg(help = KEY_ID_HELP)]
        key_id: String,
        /// Waiting period in days (7-30).
        #[arg(long, default_value_t = 30)]
        pending_days: u32,
    },
    /// Cancel a scheduled deletion (the key comes back disabled).
    CancelDeletion {
        #[arg(help = KEY_ID_HELP)]
        key_id: String,
    },
    /// Set tags.
    Tag {
        #[arg(help = KEY_ID_HELP)]
        key_id: String,
        /// NAME=VALUE pairs.
        #[arg(required = true, value_name = "NAME=VALUE")]
        tags: Vec<String>,
    },
    /// Remove tags.
    Untag {
        #[arg(help = KEY_ID_HELP)]
        key_id: String,
        /// Tag names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Replace a key's description.
    SetDescription {
        #[arg(help = KEY_ID_HELP)]
        key_id: String,
        /// The new description (up to 8192 characters).
        description: String,
    },
}

/// `kms key create --origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Origin {
    /// kms generates the material.
    Kms,
    /// The material is imported later (`kms key import`).
    External,
}

/// `kms key import --wrapping-key-spec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum WrappingSpec {
    /// RSA-3072.
    #[value(name = "rsa-3072")]
    Rsa3072,
    /// RSA-4096.
    #[value(name = "rsa-4096")]
    Rsa4096,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Spec {
    Aes256,
    Aes128,
}

#[derive(Debug, Args)]
pub(crate) struct DatakeyArgs {
    /// The master key's id.
    pub(crate) key_id: String,
    /// Data key size.
    #[arg(long, value_enum, default_value = "aes256")]
    pub(crate) spec: Spec,
    /// Encryption context entry NAME=VALUE (repeatable).
    #[arg(long = "context", value_name = "NAME=VALUE")]
    pub(crate) context: Vec<String>,
    /// Return only the wrapped key.
    #[arg(long)]
    pub(crate) no_plaintext: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ServiceCommand {
    /// Show the service status.
    Status,
    /// Show the current configuration (secrets redacted).
    Config,
    /// Configure a stopped service from a JSON or TOML request file.
    Configure {
        /// The request file (`-` for stdin).
        file: PathBuf,
    },
    /// Switch a running service to a new configuration without a restart.
    Reconfigure {
        /// The request file (`-` for stdin).
        file: PathBuf,
    },
    /// Start the service.
    Start,
    /// Stop the service.
    Stop,
    /// Drop cached key metadata.
    ClearCache,
}

#[derive(Debug, Args)]
pub(crate) struct EncryptArgs {
    /// The master key that wraps the data key: its id, or an alias (`alias/...`).
    #[arg(long)]
    pub(crate) key: String,
    /// Input file [default: stdin].
    #[arg(long, short = 'i')]
    pub(crate) input: Option<PathBuf>,
    /// Output file [default: stdout].
    #[arg(long, short = 'o')]
    pub(crate) output: Option<PathBuf>,
    /// Encryption context entry NAME=VALUE (repeatable); needed again to decrypt.
    #[arg(long = "context", value_name = "NAME=VALUE")]
    pub(crate) context: Vec<String>,
    /// Never show a progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
}

/// Decrypt a file (or stdin) made by `kms encrypt`.
///
/// With -o FILE the output is all or nothing: the plaintext goes to a private temporary file
/// that replaces FILE only once the whole input has authenticated. To stdout, plaintext is
/// written as it is verified, segment by segment: a truncated or cut-short input is only
/// detected at its end, after the earlier segments were written, and the command then fails
/// (exit 1). Use -o FILE when a consumer must never see a partial result.
#[derive(Debug, Args)]
pub(crate) struct DecryptArgs {
    /// Input file [default: stdin].
    #[arg(long, short = 'i')]
    pub(crate) input: Option<PathBuf>,
    /// Output file, replaced only by a complete, verified result [default: stdout, written as
    /// verified: a truncated input fails only at its end].
    #[arg(long, short = 'o')]
    pub(crate) output: Option<PathBuf>,
    /// Encryption context entry NAME=VALUE, as given to encrypt (repeatable).
    #[arg(long = "context", value_name = "NAME=VALUE")]
    pub(crate) context: Vec<String>,
    /// Only plaintext bytes START..END (END exclusive; `START-` to the end). Needs a seekable
    /// input file.
    #[arg(long, value_name = "START-END")]
    pub(crate) range: Option<String>,
    /// Never show a progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
}

/// Rewrap the data key of files made by `kms encrypt`, in place.
///
/// Each file's wrapped data key is sent to the server (`re-encrypt`) and comes back wrapped
/// under the key's current version, or under --to-key; the encrypted data is copied unchanged.
/// Each file is replaced atomically (a temporary file beside it, then a rename): an interrupted
/// run leaves every file either old or new, both readable. --resume skips the files a journal
/// (.kms-rewrap.journal in the current folder, or --journal) records as done, and removes the
/// temporary files a killed run left. The first failure stops the run (fix it, then --resume).
#[derive(Debug, Args)]
pub(crate) struct RewrapArgs {
    /// Files, or folders whose files (recursively) are rewrapped.
    #[arg(required = true, value_name = "PATH")]
    pub(crate) paths: Vec<PathBuf>,
    /// Wrap under this master key instead of the current version of each file's own key.
    #[arg(long, value_name = "KEY_ID")]
    pub(crate) to_key: Option<String>,
    /// Encryption context entry NAME=VALUE, as given to encrypt (repeatable).
    #[arg(long = "context", value_name = "NAME=VALUE")]
    pub(crate) context: Vec<String>,
    /// Skip the files the journal lists as done by an earlier, interrupted run.
    #[arg(long)]
    pub(crate) resume: bool,
    /// The journal of finished files [default: ./.kms-rewrap.journal].
    #[arg(long, value_name = "FILE")]
    pub(crate) journal: Option<PathBuf>,
    #[arg(long)]
    pub(crate) quiet: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print a complete, commented kms.toml: every option, its default and its KMS_* variable.
    Example,
    /// Print the same reference as Markdown (docs/configuration.md).
    Reference,
    /// Check a kms.toml (`-` for stdin); the error names the offending option.
    Check {
        /// The file to check, or `-`.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Print a new random token and its hash (put the hash in `[[server.identities]]`).
    Generate,
    /// Print the hash of the token read from stdin.
    Hash,
    /// Print a new AWS access key for an identity: the `[[server.aws.access_keys]]` table (the
    /// secret sealed with the data folder's seal key) and the secret once, for the client.
    Aws {
        /// The identity the key signs as.
        #[arg(long)]
        identity: String,
        /// The server's data folder (its seal key seals the secret).
        #[arg(long, env = "KMS_DATA_DIR", default_value = crate::serve::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// The seal key file, when the server uses one outside the data folder.
        #[arg(long, env = "KMS_SEAL_KEY_FILE")]
        seal_key_file: Option<PathBuf>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn help_of(args: &[&str]) -> String {
        let err = parse(args.iter().copied()).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        err.render().to_string()
    }

    #[test]
    fn serve_help_shows_no_client_options_and_points_to_the_config_reference() {
        let help = help_of(&["kms", "serve", "--help"]);
        for client_only in ["--url", "--token", "--token-file", "--ca-cert", "--json", "--verbose"] {
            assert!(!help.contains(client_only), "{client_only} in\n{help}");
        }
        assert!(help.contains("kms config example") && help.contains("kms config check"), "{help}");
        assert!(help.contains("--listen") && help.contains("[env: KMS_LISTEN]"), "{help}");
        assert!(!help.contains("KMS_LISTEN="), "unset variables show as empty values:\n{help}");
        let err = parse(["kms", "serve", "--json"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        let cli = parse(["kms", "serve", "--listen", "127.0.0.1:1"]).unwrap();
        let listen = "127.0.0.1:1".parse().ok();
        assert!(matches!(&cli.command, Command::Serve(serve) if serve.listen == listen), "{cli:?}");
    }

    #[test]
    fn client_help_groups_client_options_and_hides_unset_variables() {
        let help = help_of(&["kms", "key", "describe", "--help"]);
        assert!(help.contains("Client options:"), "{help}");
        assert!(!help.contains("KMS_URL="), "{help}");
        assert!(help.contains("[env: KMS_URL]"), "{help}");
        // The positional key id is described.
        let line = help.lines().find(|l| l.contains("<KEY_ID>") && !l.starts_with("Usage")).unwrap();
        assert!(line.contains("id"), "{help}");
        // The client options follow the command's own options, not interleaved with them.
        let own = help.find("Options:").unwrap();
        assert!(help.find("Client options:").unwrap() > own, "{help}");
        assert!(parse(["kms", "key", "list", "--json"]).unwrap().global.json);
    }

    #[test]
    fn decrypt_help_says_a_truncated_input_shows_only_at_the_end_on_stdout() {
        let help = help_of(&["kms", "decrypt", "--help"]);
        assert!(help.contains("only detected at its end"), "{help}");
        assert!(help.contains("all or nothing"), "{help}");
    }

    #[test]
    fn a_token_on_the_command_line_never_shows_in_debug_output() {
        let cli = parse(["kms", "--token", "s.do-not-print-me", "status"]).unwrap();
        assert_eq!(cli.global.token.as_ref().map(SecretString::expose_secret), Some("s.do-not-print-me"));
        let printed = format!("{cli:?}");
        assert!(!printed.contains("do-not-print-me"), "{printed}");
    }
}

/// Back up every key of the running server (local backend) into a sealed bundle.
///
/// The bundle holds every key, version, state, description and tag, each record sealed under
/// the master key, taken as one consistent snapshot while the server keeps serving. The master
/// key is NOT in it: keep master.key apart, restoring needs it. Needs the `backup` grant.
/// Written atomically (a temporary file, then a rename), mode 0600.
#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// The bundle file to write (replaced if it exists).
    #[arg(long, short = 'o')]
    pub(crate) out: PathBuf,
}

/// Restore a backup bundle into a data folder whose key store is empty (offline: the server
/// must not be running on it).
///
/// The key store and master key are found as `kms serve` finds them: the local backend of the
/// service configuration saved in DIR if there is one, else DIR/keys with DIR/master.key (the
/// file `kms serve` creates by default). Put the master key back first, or name it with
/// --master-key-file. Nothing is written unless the bundle is whole, unaltered and made under
/// that master key; a key store that holds keys is refused. Then start `kms serve --data-dir DIR`.
#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The bundle written by `kms backup`.
    pub(crate) file: PathBuf,
    /// The data folder to restore into (created if missing) [default: ./kms-data].
    #[arg(long, env = "KMS_DATA_DIR", hide_env_values = true)]
    pub(crate) data_dir: Option<PathBuf>,
    /// The master key file (base64, mode 0600) [default: the saved service's, else DIR/master.key].
    #[arg(long)]
    pub(crate) master_key_file: Option<PathBuf>,
}
