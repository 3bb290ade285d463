//! The command line (clap).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kms_types::secret::SecretString;

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

/// Keeps a token given on the command line out of `Debug` output and zeroizes it on drop.
fn parse_secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

/// Options of the client commands.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Server URL.
    #[arg(long, env = "KMS_URL", default_value = "http://127.0.0.1:7373", global = true)]
    pub(crate) url: String,
    /// Bearer token (prefer KMS_TOKEN or --token-file: arguments are visible to other users).
    #[arg(long, env = "KMS_TOKEN", hide_env_values = true, global = true, value_parser = parse_secret)]
    pub(crate) token: Option<SecretString>,
    /// File holding the bearer token [default: ./kms-data/admin.token if it exists].
    #[arg(long, env = "KMS_TOKEN_FILE", global = true)]
    pub(crate) token_file: Option<PathBuf>,
    /// PEM CA bundle to verify an https server with (instead of the system roots).
    #[arg(long, env = "KMS_CA_CERT", global = true)]
    pub(crate) ca_cert: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Manage master keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Generate a data key under a master key.
    Datakey(DatakeyArgs),
    /// Show the service status.
    Status,
    /// Control the service: configuration, start, stop.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Encrypt a file (or stdin) with a fresh data key (envelope encryption, streaming).
    Encrypt(EncryptArgs),
    /// Decrypt a file (or stdin) made by `kms encrypt`.
    Decrypt(DecryptArgs),
    /// Bearer tokens for the server configuration.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// Run the kms server.
///
/// With no options: keys on local disk under ./kms-data, listening on 127.0.0.1:7373 (loopback
/// only). On the first start a master key (./kms-data/master.key) and an admin token
/// (./kms-data/admin.token) are created, each mode 0600; only the token's path is printed.
///
/// Settings come from, highest first: command-line flags, KMS_* environment variables, the
/// TOML file given with --config (KMS_CONFIG), built-in defaults. Every key of the file:
///
///   data_dir = "./kms-data"          # keys, state, tokens
///   seal_key_file = "/etc/kms/seal.key"  # seals secrets in the saved state
///                                    # [default: <data_dir>/config-seal.key]
///   log = "info"                     # tracing filter (KMS_LOG)
///   bootstrap_admin = true           # create the admin token on first start
///
///   [server]
///   listen = "127.0.0.1:7373"
///   max_body_bytes = 1048576
///   header_read_timeout_seconds = 10
///   request_timeout_seconds = 30
///   max_connections = 1024
///   shutdown_grace_seconds = 30
///   public_health = true             # GET /health without a token
///   audit_log = "./kms-data/audit.log"   # one JSON line per request
///   [server.tls]                     # omit for plain HTTP
///   cert_path = "server.pem"
///   key_path = "server-key.pem"
///   client_ca_path = "clients-ca.pem"    # require client certificates (mTLS)
///   [[server.identities]]            # besides the bootstrap admin
///   name = "app"
///   token_sha256 = "<kms token hash>"
///   allow = [{ operations = ["generate_data_key", "decrypt"], keys = ["app-*"] }]
///
///   [kms]                            # the service configuration used when the data
///                                    # folder has none saved (a configure request body)
///   backend_type = "vault"
///   address = "http://127.0.0.1:8200"
///   auth_method = { type = "token", token = "..." }
///
/// The service configuration (backend and its settings) can change at run time through the
/// API (POST /kms/v1/configure, /reconfigure); it is saved in the data folder, secrets sealed,
/// and resumed on the next start.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "KMS_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7373].
    #[arg(long, env = "KMS_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Data folder [default: ./kms-data].
    #[arg(long, env = "KMS_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Audit log file (one JSON line per request).
    #[arg(long, env = "KMS_AUDIT_LOG")]
    pub(crate) audit_log: Option<PathBuf>,
    /// File with the base64 32-byte key that seals secrets in the saved state.
    #[arg(long, env = "KMS_SEAL_KEY_FILE")]
    pub(crate) seal_key_file: Option<PathBuf>,
    /// Largest request body in bytes.
    #[arg(long, env = "KMS_MAX_BODY_BYTES")]
    pub(crate) max_body_bytes: Option<usize>,
    /// Most concurrent connections.
    #[arg(long, env = "KMS_MAX_CONNECTIONS")]
    pub(crate) max_connections: Option<usize>,
    /// Log filter, e.g. `info` or `kms_admin=debug`.
    #[arg(long, env = "KMS_LOG")]
    pub(crate) log: Option<String>,
}

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
    Describe { key_id: String },
    /// Enable a disabled key.
    Enable { key_id: String },
    /// Disable a key (it stops encrypting until enabled).
    Disable { key_id: String },
    /// Make a new key version current.
    Rotate { key_id: String },
    /// Schedule a key's deletion.
    Delete {
        key_id: String,
        /// Waiting period in days (7-30).
        #[arg(long, default_value_t = 30)]
        pending_days: u32,
    },
    /// Cancel a scheduled deletion (the key comes back disabled).
    CancelDeletion { key_id: String },
    /// Set tags.
    Tag {
        key_id: String,
        /// NAME=VALUE pairs.
        #[arg(required = true, value_name = "NAME=VALUE")]
        tags: Vec<String>,
    },
    /// Remove tags.
    Untag {
        key_id: String,
        /// Tag names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Replace a key's description.
    SetDescription { key_id: String, description: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Spec {
    Aes256,
    Aes128,
}

#[derive(Debug, Args)]
pub(crate) struct DatakeyArgs {
    /// The master key.
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
    Configure { file: PathBuf },
    /// Switch a running service to a new configuration without a restart.
    Reconfigure { file: PathBuf },
    /// Start the service.
    Start,
    /// Stop the service.
    Stop,
    /// Drop cached key metadata.
    ClearCache,
}

#[derive(Debug, Args)]
pub(crate) struct EncryptArgs {
    /// The master key that wraps the data key.
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

#[derive(Debug, Args)]
pub(crate) struct DecryptArgs {
    /// Input file [default: stdin].
    #[arg(long, short = 'i')]
    pub(crate) input: Option<PathBuf>,
    /// Output file [default: stdout].
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

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Print a new random token and its hash (put the hash in `[[server.identities]]`).
    Generate,
    /// Print the hash of the token read from stdin.
    Hash,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_token_on_the_command_line_never_shows_in_debug_output() {
        let cli = Cli::try_parse_from(["kms", "--token", "s.do-not-print-me", "status"]).unwrap();
        assert_eq!(cli.global.token.as_ref().map(SecretString::expose_secret), Some("s.do-not-print-me"));
        let printed = format!("{cli:?}");
        assert!(!printed.contains("do-not-print-me"), "{printed}");
    }
}
