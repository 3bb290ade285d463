//! `kms serve`: settings from flags, environment and TOML; the data folder; the bootstrap admin
//! token; resuming the saved service state; then the admin server until SIGINT/SIGTERM.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use kms::admin::auth::{Grant, IdentityConfig, generate_token, hash_token};
use kms::admin::config::ServerConfig;
use kms::admin::store::{ConfigStore, PersistedState, write_private_file};
use kms::admin::{App, Server};
use kms::api_types::ConfigureBody;
use kms::config::{KmsConfig, LocalConfig, MasterKeySource};
use kms::service_manager::KmsServiceManager;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::cli::ServeArgs;
use crate::client::CliError;

/// Default data folder.
pub(crate) const DEFAULT_DATA_DIR: &str = "./kms-data";
/// The bootstrap admin token's file in the data folder.
pub(crate) const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The bootstrap admin token's hash in the data folder (kept when the token file is removed).
pub(crate) const ADMIN_HASH_FILE: &str = "admin.token.sha256";
/// The default local master key's file in the data folder.
pub(crate) const MASTER_KEY_FILE: &str = "master.key";

/// The TOML file (`kms serve --config`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// Data folder.
    #[serde(default)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Seal key for the saved state.
    #[serde(default)]
    pub(crate) seal_key_file: Option<PathBuf>,
    /// Log filter.
    #[serde(default)]
    pub(crate) log: Option<String>,
    /// Create the admin token on first start (default true).
    #[serde(default)]
    pub(crate) bootstrap_admin: Option<bool>,
    /// Leave core dumps possible (default false: see [`crate::hardening`]).
    #[serde(default)]
    pub(crate) allow_core_dumps: Option<bool>,
    /// The HTTP server.
    #[serde(default)]
    pub(crate) server: ServerConfig,
    /// The service configuration to use when none is saved.
    #[serde(default)]
    pub(crate) kms: Option<ConfigureBody>,
}

/// Everything `kms serve` runs with, after merging flags, environment and file.
#[derive(Debug)]
pub(crate) struct Settings {
    /// Data folder (absolute).
    pub(crate) data_dir: PathBuf,
    /// Seal key file.
    pub(crate) seal_key_file: Option<PathBuf>,
    /// Log filter.
    pub(crate) log: String,
    /// Create the admin token on first start.
    pub(crate) bootstrap_admin: bool,
    /// Leave core dumps possible.
    pub(crate) allow_core_dumps: bool,
    /// The HTTP server.
    pub(crate) server: ServerConfig,
    /// Initial service configuration.
    pub(crate) kms: Option<ConfigureBody>,
}

/// Merges flags and environment (clap has read both) over the file over the defaults.
pub(crate) fn settings(args: &ServeArgs) -> Result<Settings, CliError> {
    let file = match &args.config {
        Some(path) => {
            let file = crate::config_check::load(path)?;
            crate::config_check::check(&file).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
            file
        }
        None => FileConfig::default(),
    };
    let mut server = file.server;
    if let Some(listen) = args.listen {
        server.listen = listen;
    }
    if let Some(path) = &args.audit_log {
        server.audit_log = Some(path.clone());
    }
    if let Some(n) = args.max_body_bytes {
        server.max_body_bytes = n;
    }
    if let Some(n) = args.max_connections {
        server.max_connections = n;
    }
    server.validate().map_err(CliError::usage)?;
    let data_dir = args.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    Ok(Settings {
        data_dir,
        seal_key_file: args.seal_key_file.clone().or(file.seal_key_file),
        log: args.log.clone().or(file.log).unwrap_or_else(|| "info".into()),
        bootstrap_admin: file.bootstrap_admin.unwrap_or(true),
        allow_core_dumps: args.allow_core_dumps || file.allow_core_dumps.unwrap_or(false),
        server,
        // KMS_VAULT_ADDR, KMS_VAULT_CACERT, KMS_VAULT_CLIENT_CERT, KMS_VAULT_CLIENT_KEY.
        kms: file
            .kms
            .map(|body| body.with_vault_env(|name| std::env::var(name).ok()))
            .transpose()
            .map_err(|e| CliError::usage(e.to_string()))?,
    })
}

/// A TOML error as `line N: message`, without the excerpt of the offending line that the
/// error's `Display` adds: that line may hold a secret (a Vault token, a master key).
///
/// When the error points into a `name = value` line, the option's dotted name (its table and
/// its key, never its value) is named too.
pub(crate) fn toml_error(err: &toml::de::Error, text: &str) -> String {
    let message = err.message().trim_end();
    match err.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or("");
            let line = before.matches('\n').count() + 1;
            match option_at(text, before) {
                Some(option) => format!("line {line}: option `{option}`: {message}"),
                None => format!("line {line}: {message}"),
            }
        }
        None => message.to_owned(),
    }
}

/// The name in a `[table]` or `[[table]]` header line.
fn table_name(line: &str) -> Option<&str> {
    let name = line.strip_prefix("[[").and_then(|t| t.strip_suffix("]]"));
    name.or_else(|| line.strip_prefix('[').and_then(|t| t.strip_suffix(']'))).map(str::trim)
}

/// The dotted name of the option whose line ends `before` (the text up to an error), from the
/// nearest `[table]` header above and the key left of `=`.
fn option_at(text: &str, before: &str) -> Option<String> {
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?.lines().next()?.trim();
    // An error in a table as a whole (an unknown key of an inline table) points at its header.
    if let Some(table) = table_name(line) {
        return Some(table.to_owned());
    }
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('#') || key.contains(['{', '[', ' ']) {
        return None;
    }
    let table = before[..line_start].lines().rev().map(str::trim).find_map(table_name);
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_owned(),
    })
}

/// Creates the data folder (0700) or checks that it and every file in it can be trusted
/// (not a symlink, owned by this user, writable by nobody else): `kms::admin::store::prepare_data_dir`.
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    kms::admin::store::prepare_data_dir(path).map_err(std::io::Error::other)
}

/// Creates the admin token on first start; returns the identity (from the saved hash) and
/// whether the token was just created.
pub(crate) fn bootstrap_admin(data_dir: &Path, taken: &[IdentityConfig]) -> Result<(IdentityConfig, bool), CliError> {
    let hash_path = data_dir.join(ADMIN_HASH_FILE);
    let token_path = data_dir.join(ADMIN_TOKEN_FILE);
    let (hash, created) = match fs::read_to_string(&hash_path) {
        Ok(hash) => (hash.trim().to_owned(), false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = generate_token();
            write_private_file(&token_path, format!("{}\n", token.as_str()).as_bytes())
                .map_err(|e| CliError::local(format!("{}: {e}", token_path.display())))?;
            let hash = hash_token(&token);
            write_private_file(&hash_path, format!("{hash}\n").as_bytes())
                .map_err(|e| CliError::local(format!("{}: {e}", hash_path.display())))?;
            (hash, true)
        }
        Err(e) => return Err(CliError::local(format!("{}: {e}", hash_path.display()))),
    };
    let name = if taken.iter().any(|i| i.name == "admin") { "bootstrap-admin" } else { "admin" };
    let identity = IdentityConfig {
        name: name.into(),
        token_sha256: hash,
        allow: vec![Grant { operations: vec!["*".into()], keys: vec!["*".into()] }],
    };
    Ok((identity, created))
}

/// The configuration used when nothing is saved: the local backend in the data folder, with a
/// master key file created on first use (0600).
fn default_local_config(data_dir: &Path) -> Result<KmsConfig, CliError> {
    let key_path = data_dir.join(MASTER_KEY_FILE);
    if !key_path.exists() {
        eprintln!(
            "kms: created the master key {}: it opens every key; back it up apart from the data folder \
             (without it nothing can be decrypted)",
            key_path.display()
        );
        let mut key = Zeroizing::new([0u8; 32]);
        kms::crypto::rand::fill(key.as_mut()).map_err(|_| CliError::local("the system random generator failed"))?;
        let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(key.as_ref()));
        write_private_file(&key_path, encoded.as_bytes())
            .map_err(|e| CliError::local(format!("{}: {e}", key_path.display())))?;
    }
    Ok(KmsConfig::local(LocalConfig::new(data_dir.join("keys"), MasterKeySource::File { path: key_path })))
}

/// Runs the server until SIGINT or SIGTERM.
pub(crate) async fn run(args: ServeArgs) -> Result<(), CliError> {
    let mut settings = settings(&args)?;
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log)
        .map_err(|e| CliError::usage(format!("--log {}: {e}", settings.log)))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
    if settings.allow_core_dumps {
        tracing::warn!("core dumps are allowed (--allow-core-dumps): a dump would hold keys in the clear");
    } else {
        match crate::hardening::harden() {
            Ok(done) => tracing::debug!(?done, "core dumps are off"),
            Err(err) => tracing::warn!(error = %err, "core dumps could not be turned off"),
        }
    }
    // Bind before creating anything: a taken address must not leave a new data folder behind.
    let listener = Server::listen(&settings.server).await.map_err(|e| listen_error(&settings.server, &e))?;

    create_private_dir(&settings.data_dir)
        .map_err(|e| CliError::local(format!("data folder {}: {e}", settings.data_dir.display())))?;
    let data_dir = fs::canonicalize(&settings.data_dir)
        .map_err(|e| CliError::local(format!("data folder {}: {e}", settings.data_dir.display())))?;
    let mut bootstrap_name = None;
    if settings.bootstrap_admin {
        let (identity, created) = bootstrap_admin(&data_dir, &settings.server.identities)?;
        if created {
            eprintln!("kms: created an admin token in {}", data_dir.join(ADMIN_TOKEN_FILE).display());
        }
        bootstrap_name = Some(identity.name.clone());
        settings.server.identities.push(identity);
    }
    if settings.server.identities.is_empty() {
        tracing::warn!("no identities are configured: every request will be refused");
    }

    let store = ConfigStore::open(&data_dir, settings.seal_key_file.as_deref())
        .map_err(|e| CliError::local(format!("saved state: {e}")))?;
    if let (Some(name), true) = (bootstrap_name, settings.server.aws.enabled) {
        let (key, created) = crate::aws_keys::bootstrap_access_key(&data_dir, &store, &name)?;
        if created {
            let path = data_dir.join(crate::aws_keys::AWS_CREDENTIALS_FILE);
            eprintln!("kms: created an AWS access key for {name} in {}", path.display());
        }
        settings.server.aws.access_keys.push(key);
    }
    let manager = Arc::new(KmsServiceManager::new(kms::default_registry()));
    resume(&manager, &store, &settings, &data_dir).await?;

    let app = Arc::new(App::new(manager.clone(), &settings.server, Some(store)).map_err(CliError::usage)?);
    if settings.server.aws.enabled {
        // EnableKeyRotation's periods are carried out here (the keys hold them as tags).
        tokio::spawn(kms::admin::aws::rotation::run(manager.clone(), kms::admin::aws::rotation::SWEEP_INTERVAL));
    }
    let server = Server::on_listener(listener, &settings.server, app).map_err(CliError::local)?;
    let scheme = if server.is_tls() { "https" } else { "http" };
    eprintln!("kms: listening on {scheme}://{}", server.local_addr());
    tracing::info!(addr = %server.local_addr(), data_dir = %data_dir.display(), "kms server started");
    server.run_until(kms::admin::server::shutdown_signal()).await;
    // Release the backend (the local key store's lock) before exiting; the saved state keeps
    // saying "running", so the next start resumes.
    manager.shutdown().await;
    eprintln!("kms: stopped");
    Ok(())
}

/// The message for an address that cannot be bound, with the way out when it is taken.
fn listen_error(server: &ServerConfig, err: &std::io::Error) -> CliError {
    let hint = if err.kind() == std::io::ErrorKind::AddrInUse {
        "; another server (maybe another kms serve) uses it: pick another address with --listen HOST:PORT \
         (KMS_LISTEN, or listen in [server])"
    } else {
        ""
    };
    CliError::local(format!("cannot listen on {}: {err}{hint}", server.listen))
}

/// The warning for a master key file kept inside the data folder, if it is.
pub(crate) fn master_key_placement_warning(config: &KmsConfig, data_dir: &Path) -> Option<String> {
    let kms::config::BackendConfig::Local(local) = &config.backend_config else { return None };
    let MasterKeySource::File { path } = &local.master_key else { return None };
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.clone());
    path.starts_with(data_dir).then(|| {
        format!(
            "the master key file {} is inside the data folder {}: one copy of that folder (a backup, a \
             snapshot) opens every key. In production keep it elsewhere (systemd credentials, a separate \
             mount): see docs/deployment.md",
            path.display(),
            data_dir.display()
        )
    })
}

/// Configures (and starts) the service from the saved state, or from the file's `[kms]`, or
/// with the default local backend. A start failure is logged, not fatal: the API stays up so an
/// operator can reconfigure.
async fn resume(
    manager: &KmsServiceManager,
    store: &ConfigStore,
    settings: &Settings,
    data_dir: &Path,
) -> Result<(), CliError> {
    let saved = store.load().map_err(|e| CliError::local(format!("saved state: {e}")))?;
    let (state, fresh) = match saved {
        Some(state) => (state, false),
        None => {
            let config = match &settings.kms {
                Some(body) => body.to_config().map_err(|e| CliError::usage(format!("[kms]: {e}")))?,
                None => default_local_config(data_dir)?,
            };
            (PersistedState { config, running: true }, true)
        }
    };
    if let Some(warning) = master_key_placement_warning(&state.config, data_dir) {
        eprintln!("kms: warning: {warning}");
    }
    manager
        .configure(state.config.clone())
        .await
        .map_err(|e| CliError::usage(format!("the service configuration is invalid: {e}")))?;
    if state.running {
        match manager.start().await {
            Ok(()) => tracing::info!(backend = state.config.backend.as_str(), "kms service running"),
            Err(err) => tracing::error!(error = %err, "the kms service did not start; fix it through the API"),
        }
    }
    if fresh {
        store.save(&state).map_err(|e| CliError::local(format!("saved state: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_config_accepts_every_documented_key() {
        let text = r#"
            data_dir = "/var/lib/kms"
            seal_key_file = "/etc/kms/seal.key"
            log = "debug"
            bootstrap_admin = false
            [server]
            listen = "127.0.0.1:9000"
            max_body_bytes = 65536
            header_read_timeout_seconds = 5
            request_timeout_seconds = 10
            max_connections = 64
            shutdown_grace_seconds = 3
            public_health = false
            audit_log = "/var/log/kms-audit.log"
            [server.tls]
            cert_path = "s.pem"
            key_path = "k.pem"
            client_ca_path = "ca.pem"
            [[server.identities]]
            name = "app"
            token_sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            allow = [{ operations = ["generate_data_key", "decrypt"], keys = ["app-*"] }]
            [kms]
            backend_type = "vault"
            address = "http://127.0.0.1:8200"
            auth_method = { type = "token", token = "root" }
        "#;
        let file: FileConfig = toml::from_str(text).unwrap();
        assert_eq!(file.server.max_connections, 64);
        assert_eq!(file.server.identities[0].allow[0].keys, vec!["app-*".to_owned()]);
        assert!(file.server.tls.unwrap().client_ca_path.is_some());
        assert!(matches!(file.kms.map(|b| b.request), Some(kms::api_types::ConfigureKmsRequest::Vault(_))));
        let err = toml::from_str::<FileConfig>("datadir = 'x'").unwrap_err();
        assert!(err.message().contains("unknown field `datadir`"), "{err}");
    }

    #[test]
    fn a_bad_config_file_is_reported_without_echoing_its_lines() {
        let dir = std::env::temp_dir().join(format!("kms-cli-badtoml-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        create_private_dir(&dir).unwrap();
        let path = dir.join("kms.toml");
        let head = "[kms]\nbackend_type = \"vault\"\naddress = \"http://127.0.0.1:8200\"\n";
        for line in [
            "auth_method = { type = \"token\", token = \"s.must-not-leak\", tokn = 1 }",
            "auth_method = { type = \"token\", token = \"s.must-not-leak\" } x",
        ] {
            fs::write(&path, format!("{head}{line}\n")).unwrap();
            let args = ServeArgs {
                config: Some(path.clone()),
                listen: None,
                data_dir: None,
                audit_log: None,
                seal_key_file: None,
                max_body_bytes: None,
                max_connections: None,
                log: None,
                allow_core_dumps: false,
            };
            let err = settings(&args).unwrap_err();
            assert!(!err.message.contains("must-not-leak"), "{}", err.message);
            assert!(err.message.contains("line "), "{}", err.message);
        }
    }

    #[test]
    fn a_master_key_file_inside_the_data_folder_is_warned_about() {
        let data_dir = PathBuf::from("/var/lib/kms");
        let inside = KmsConfig::local(LocalConfig::new(
            "/var/lib/kms/keys",
            MasterKeySource::File { path: "/var/lib/kms/master.key".into() },
        ));
        assert!(master_key_placement_warning(&inside, &data_dir).unwrap().contains("docs/deployment.md"));
        let outside = KmsConfig::local(LocalConfig::new(
            "/var/lib/kms/keys",
            MasterKeySource::File { path: "/run/credentials/kms.service/master.key".into() },
        ));
        assert!(master_key_placement_warning(&outside, &data_dir).is_none());
        let env = KmsConfig::local(LocalConfig::new("/var/lib/kms/keys", MasterKeySource::Env { var: "K".into() }));
        assert!(master_key_placement_warning(&env, &data_dir).is_none());
    }

    #[test]
    fn bootstrap_creates_a_private_token_once() {
        let dir = std::env::temp_dir().join(format!("kms-cli-bootstrap-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        create_private_dir(&dir).unwrap();
        let (first, created) = bootstrap_admin(&dir, &[]).unwrap();
        assert!(created);
        let token = fs::read_to_string(dir.join(ADMIN_TOKEN_FILE)).unwrap();
        assert_eq!(first.token_sha256, hash_token(token.trim()));
        let (second, created) = bootstrap_admin(&dir, std::slice::from_ref(&first)).unwrap();
        assert!(!created);
        assert_eq!(second.token_sha256, first.token_sha256);
        assert_eq!(second.name, "bootstrap-admin");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(ADMIN_TOKEN_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
