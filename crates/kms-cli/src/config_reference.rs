//! The one description of every option of `kms.toml`, from which both `kms config example`
//! (a complete, commented file) and `docs/configuration.md` are generated; a test regenerates
//! the document and compares it, and another checks that every field the configuration types
//! have is described here, so neither can drift from the code.

/// A table of the file.
#[derive(Debug)]
pub(crate) struct Section {
    /// The table header without brackets (`""` for the top level, `[server.identities]` for an
    /// array of tables).
    pub(crate) table: &'static str,
    /// Title in the document.
    pub(crate) title: &'static str,
    /// What the table is for.
    pub(crate) about: &'static str,
    /// Whether the table is absent by default (the example shows it commented out).
    pub(crate) optional: bool,
    /// The options.
    pub(crate) options: &'static [Opt],
}

/// One option.
#[derive(Debug)]
pub(crate) struct Opt {
    /// The key.
    pub(crate) name: &'static str,
    /// The default as a TOML value; `None` when the option is unset by default.
    pub(crate) default: Option<&'static str>,
    /// A value to show when there is no default.
    pub(crate) example: &'static str,
    /// The environment variable and flag that override it.
    pub(crate) env: Option<(&'static str, &'static str)>,
    /// What it does (one line; the default's meaning when unset).
    pub(crate) about: &'static str,
}

const fn opt(name: &'static str, default: &'static str, about: &'static str) -> Opt {
    Opt { name, default: Some(default), example: "", env: None, about }
}

const fn unset(name: &'static str, example: &'static str, about: &'static str) -> Opt {
    Opt { name, default: None, example, env: None, about }
}

const fn with_env(mut o: Opt, var: &'static str, flag: &'static str) -> Opt {
    o.env = Some((var, flag));
    o
}

/// Every table and option of `kms.toml`, in file order.
pub(crate) const SECTIONS: &[Section] = &[
    Section {
        table: "",
        title: "Top level",
        about: "Where the server keeps its files, and process settings.",
        optional: false,
        options: &[
            with_env(
                opt("data_dir", "\"./kms-data\"", "Keys, saved state and tokens (created 0700)."),
                "KMS_DATA_DIR",
                "--data-dir",
            ),
            with_env(
                unset(
                    "seal_key_file",
                    "\"/etc/kms/seal.key\"",
                    "Base64 32-byte key sealing secrets in the saved state [default: `<data_dir>/config-seal.key`].",
                ),
                "KMS_SEAL_KEY_FILE",
                "--seal-key-file",
            ),
            with_env(
                opt("log", "\"info\"", "Log filter (tracing syntax, e.g. \"kms_admin=debug\")."),
                "KMS_LOG",
                "--log",
            ),
            opt("bootstrap_admin", "true", "Create an admin token in `<data_dir>/admin.token` on first start."),
            with_env(
                opt("allow_core_dumps", "false", "Leave core dumps possible (by default the server is non-dumpable)."),
                "KMS_ALLOW_CORE_DUMPS",
                "--allow-core-dumps",
            ),
        ],
    },
    Section {
        table: "server",
        title: "`[server]`",
        about: "The admin HTTP server.",
        optional: false,
        options: &[
            with_env(
                opt("listen", "\"127.0.0.1:7373\"", "Address to listen on (keep loopback unless TLS is set)."),
                "KMS_LISTEN",
                "--listen",
            ),
            with_env(
                opt("max_body_bytes", "1048576", "Largest request body in bytes (at least 1024); larger is 413."),
                "KMS_MAX_BODY_BYTES",
                "--max-body-bytes",
            ),
            opt("header_read_timeout_seconds", "10", "Time to send a request's headers; also closes idle connections."),
            opt("request_timeout_seconds", "30", "Time from a request's arrival to its answer; beyond it, 504."),
            with_env(
                opt("max_connections", "1024", "Most concurrent connections; more wait in the backlog."),
                "KMS_MAX_CONNECTIONS",
                "--max-connections",
            ),
            opt(
                "max_connections_per_peer",
                "256",
                "Most concurrent connections from one peer IP; a further one is closed at once (raise it behind a proxy).",
            ),
            opt(
                "response_write_timeout_seconds",
                "30",
                "Time a client has to take each part of an answer; one that stops reading is disconnected.",
            ),
            opt("shutdown_grace_seconds", "30", "How long shutdown waits for requests in flight."),
            opt("public_health", "true", "GET /health answers without a token (for probes)."),
            with_env(
                unset(
                    "audit_log",
                    "\"/var/log/kms/audit.log\"",
                    "Audit log, one JSON line per request [default: off].",
                ),
                "KMS_AUDIT_LOG",
                "--audit-log",
            ),
            opt(
                "audit_fail_closed",
                "false",
                "Refuse requests (503) while the audit log cannot be written or its queue is full.",
            ),
            opt("audit_queue_capacity", "65536", "Most audit lines waiting to be written."),
            opt("audit_sync_interval_seconds", "1", "Longest time between two syncs of the audit log to disk."),
            opt(
                "allow_insecure_http",
                "false",
                "Serve plain HTTP on a non-loopback address: tokens and keys cross the network in the clear.",
            ),
        ],
    },
    Section {
        table: "server.tls",
        title: "`[server.tls]`",
        about: "TLS for the admin server; without this table the server speaks plain HTTP.",
        optional: true,
        options: &[
            unset("cert_path", "\"/etc/kms/server.pem\"", "PEM certificate chain, leaf first."),
            unset("key_path", "\"/etc/kms/server-key.pem\"", "PEM private key (PKCS#8, PKCS#1 or SEC1)."),
            unset(
                "client_ca_path",
                "\"/etc/kms/clients-ca.pem\"",
                "CAs of accepted client certificates: requires mTLS.",
            ),
        ],
    },
    Section {
        table: "[server.identities]",
        title: "`[[server.identities]]`",
        about: "Who may call the API besides the bootstrap admin; repeat the table per identity. \
                `kms token generate` prints a token and its hash.",
        optional: true,
        options: &[
            unset("name", "\"app\"", "The identity's name (in the audit log and errors)."),
            unset("token_sha256", "\"<hash from kms token generate>\"", "SHA-256 of its bearer token, 64 hex digits."),
            unset(
                "allow",
                "[{ operations = [\"generate_data_key\", \"decrypt\"], keys = [\"app-*\"] }]",
                "Grants: operation names (\"*\", \"read\") and key-id patterns (\"*\" wildcard).",
            ),
        ],
    },
    Section {
        table: "server.aws",
        title: "`[server.aws]`",
        about: "The AWS KMS protocol on the same listener (`POST /` with `X-Amz-Target: TrentService.*`): \
                SigV4 with the access keys below, the identities' grants; see docs/aws-kms-api.md.",
        optional: true,
        options: &[
            opt("enabled", "true", "Serve the AWS KMS protocol."),
            opt("region", "\"us-east-1\"", "The region requests must be signed for; ARNs name it."),
            opt("partition", "\"aws\"", "The partition in ARNs."),
            opt("account_id", "\"000000000000\"", "The account in ARNs, 12 digits."),
        ],
    },
    Section {
        table: "[server.aws.access_keys]",
        title: "`[[server.aws.access_keys]]`",
        about: "AWS access keys, each signing as an identity; repeat the table per key. \
                `kms token aws --identity NAME` prints one (the secret sealed with the data folder's seal key). \
                The bootstrap admin gets one in `<data_dir>/aws-credentials` on first start.",
        optional: true,
        options: &[
            unset("identity", "\"app\"", "The identity (in `[[server.identities]]`) the key signs as."),
            unset("access_key_id", "\"AKIA...\"", "The access key id."),
            unset("secret_access_key", "\"sealed:v1:...\"", "The secret, sealed (never in the clear)."),
        ],
    },
    Section {
        table: "kms",
        title: "`[kms]` (local backend)",
        about: "The service configuration used when the data folder has none saved (the body of \
                POST /kms/v1/configure). Without it: the local backend in `<data_dir>/keys` with the \
                master key `<data_dir>/master.key`.",
        optional: true,
        options: &[
            unset("backend_type", "\"local\"", "The backend."),
            unset("key_dir", "\"/var/lib/kms/keys\"", "Directory of the sealed key records."),
            unset(
                "master_key",
                "{ type = \"file\", path = \"/run/credentials/kms.service/master.key\" }",
                "Master key source: type file (path), env (var), key (key) or passphrase (passphrase).",
            ),
            unset("default_key_id", "\"default\"", "Key used when a caller names none [default: none]."),
            opt("timeout_seconds", "30", "Deadline of each backend call."),
            opt("retry_attempts", "3", "Retries of idempotent calls on transient failures."),
            opt("enable_cache", "true", "Cache key metadata (describe_key) in the manager."),
            opt("max_cached_keys", "1024", "Metadata cache size."),
            opt("cache_ttl_seconds", "300", "Metadata cache lifetime of an entry."),
        ],
    },
    Section {
        table: "kms",
        title: "`[kms]` (Vault / OpenBao backend)",
        about: "The same table for Vault or OpenBao (docs/vault.md); use one `[kms]` table or the other.",
        optional: true,
        options: &[
            unset("backend_type", "\"vault\"", "The backend."),
            unset("address", "\"https://vault.example.com:8200\"", "Vault's address."),
            unset(
                "auth_method",
                "{ type = \"app_role\", role_id = \"kms\", secret_id = \"...\" }",
                "type token (token), or app_role (role_id, secret_id, and mount_path: default \"approle\").",
            ),
            unset("namespace", "\"team-a\"", "Vault namespace [default: none]."),
            opt("mount_path", "\"transit\"", "Transit mount."),
            opt("kv_mount", "\"secret\"", "KV v2 mount for key metadata."),
            opt("key_path_prefix", "\"kms/keys\"", "Metadata prefix in KV."),
            unset("default_key_id", "\"default\"", "Key used when a caller names none [default: none]."),
            opt("skip_tls_verify", "false", "Accept any server certificate. Dangerous."),
            opt("timeout_seconds", "30", "Deadline of each backend call."),
            opt("retry_attempts", "3", "Retries of idempotent calls on transient failures."),
            opt("enable_cache", "true", "Cache key metadata (describe_key) in the manager."),
            opt("max_cached_keys", "1024", "Metadata cache size."),
            opt("cache_ttl_seconds", "300", "Metadata cache lifetime of an entry."),
        ],
    },
];

/// `kms config example`: a complete `kms.toml` that `kms serve` accepts as is and that changes
/// nothing (every active line is a default; the optional tables are commented out).
pub(crate) fn example() -> String {
    let mut out = String::from(
        "# kms.toml: the configuration of `kms serve --config kms.toml` (or KMS_CONFIG=kms.toml).\n\
         # Every option with its default; uncomment and edit what you need.\n\
         # Precedence, highest first: flags, KMS_* variables, this file, the defaults.\n\
         # Check a file with `kms config check kms.toml`. Reference: docs/configuration.md.\n",
    );
    for section in SECTIONS {
        let comment = if section.optional { "# " } else { "" };
        out.push('\n');
        for line in wrap(section.about, 96) {
            out.push_str(&format!("# {line}\n"));
        }
        match section.table {
            "" => {}
            t if t.starts_with('[') => out.push_str(&format!("{comment}[{t}]\n")),
            t => out.push_str(&format!("{comment}[{t}]\n")),
        }
        for o in section.options {
            out.push_str(&format!("{comment}# {}", o.about));
            if let Some((var, flag)) = o.env {
                out.push_str(&format!(" ({var}, {flag})"));
            }
            out.push('\n');
            match o.default {
                Some(default) => out.push_str(&format!("{comment}{} = {default}\n", o.name)),
                None => out.push_str(&format!("# {} = {}\n", o.name, o.example)),
            }
        }
    }
    out
}

/// `docs/configuration.md`.
pub(crate) fn markdown() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         <!-- Generated from crates/kms-cli/src/config_reference.rs; a test fails when this file \
         differs. Regenerate: KMS_WRITE_CONFIG_DOC=1 cargo test -p kms-cli --bin kms config_reference -->\n\n\
         `kms serve` reads its settings from, highest first: command-line flags, `KMS_*` environment \
         variables, the TOML file given with `--config` (`KMS_CONFIG`), and the defaults below. \
         `kms config example` prints the complete commented file shown at the end; `kms config check \
         FILE` (or `-` for stdin) validates one and names the offending option.\n\n\
         The service configuration (`[kms]`) is only used while the data folder has none saved: \
         once the service was configured (at first start, or through `POST /kms/v1/configure`), \
         the saved configuration wins and changes go through the API (`kms service reconfigure`).\n",
    );
    for section in SECTIONS {
        out.push_str(&format!("\n## {}\n\n{}\n\n", section.title, section.about));
        out.push_str("| option | default | variable, flag | meaning |\n|---|---|---|---|\n");
        for o in section.options {
            let default = o.default.map_or_else(|| "(unset)".to_owned(), |d| format!("`{d}`"));
            let env = o.env.map_or_else(|| "-".to_owned(), |(var, flag)| format!("`{var}`, `{flag}`"));
            out.push_str(&format!("| `{}` | {default} | {env} | {} |\n", o.name, o.about.replace('|', "\\|")));
        }
    }
    out.push_str("\n## The complete example\n\n```toml\n");
    out.push_str(&example());
    out.push_str("```\n");
    out
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_owned());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use kms::admin::config::{ServerConfig, ServerTlsConfig};
    use kms::api_types::ConfigureKmsRequest;
    use serde_json::Value;

    use super::*;
    use crate::serve::FileConfig;

    fn documented(table: &str, title_hint: &str) -> BTreeSet<&'static str> {
        SECTIONS
            .iter()
            .filter(|s| s.table == table && s.title.contains(title_hint))
            .flat_map(|s| s.options.iter().map(|o| o.name))
            .collect()
    }

    fn fields(v: Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn the_example_is_accepted_and_changes_nothing() {
        let file: FileConfig = toml::from_str(&example()).unwrap();
        assert_eq!(file.server, ServerConfig::default());
        assert_eq!(file.data_dir.as_deref(), Some(std::path::Path::new(crate::serve::DEFAULT_DATA_DIR)));
        assert_eq!(file.log.as_deref(), Some("info"));
        assert_eq!(file.bootstrap_admin, Some(true));
        assert_eq!(file.allow_core_dumps, Some(false));
        assert!(file.kms.is_none());
        // Every commented-out table parses too once uncommented (one [kms] at a time).
        let text = example();
        let (before_vault, vault) = text.split_at(text.find("# [kms]").unwrap());
        let (local, vault) = vault.split_at(vault[1..].find("# [kms]").unwrap() + 1);
        for kms in [local, vault] {
            let uncommented: String = format!("{before_vault}{kms}")
                .lines()
                .map(|l| l.strip_prefix("# ").filter(|r| r.starts_with('[') || r.contains(" = ")).unwrap_or(l))
                .map(|l| format!("{l}\n"))
                .collect();
            let file: FileConfig = toml::from_str(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
            assert!(file.server.tls.is_some() && file.server.identities.len() == 1 && file.kms.is_some());
        }
    }

    #[test]
    fn every_field_of_the_configuration_types_is_described() {
        let server = fields(serde_json::to_value(ServerConfig::default()).unwrap());
        let mut tables = BTreeSet::from(["tls".to_owned(), "identities".to_owned(), "aws".to_owned()]);
        tables.extend(documented("server", "").iter().map(|s| (*s).to_owned()));
        assert_eq!(server, tables, "[server]");
        let tls = ServerTlsConfig { cert_path: "c".into(), key_path: "k".into(), client_ca_path: None };
        assert_eq!(fields(serde_json::to_value(tls).unwrap()), owned(documented("server.tls", "")));
        let identity: kms::admin::auth::IdentityConfig =
            serde_json::from_str(r#"{"name":"a","token_sha256":"00","allow":[]}"#).unwrap();
        assert_eq!(fields(serde_json::to_value(identity).unwrap()), owned(documented("[server.identities]", "")));
        let mut aws = owned(documented("server.aws", ""));
        aws.insert("access_keys".to_owned());
        assert_eq!(fields(serde_json::to_value(kms::admin::aws::settings::AwsSettings::default()).unwrap()), aws);
        let key = kms::admin::aws::settings::AccessKeyConfig {
            identity: "a".into(),
            access_key_id: "A".into(),
            secret_access_key: "sealed:v1:".into(),
        };
        assert_eq!(fields(serde_json::to_value(key).unwrap()), owned(documented("[server.aws.access_keys]", "")));
        let local: ConfigureKmsRequest =
            serde_json::from_str(r#"{"backend_type":"local","key_dir":"k","master_key":{"type":"env","var":"V"}}"#)
                .unwrap();
        assert_eq!(fields(serde_json::to_value(local).unwrap()), owned(documented("kms", "local")));
        let vault: ConfigureKmsRequest = serde_json::from_str(
            r#"{"backend_type":"vault","address":"http://a","auth_method":{"type":"token","token":"t"}}"#,
        )
        .unwrap();
        assert_eq!(fields(serde_json::to_value(vault).unwrap()), owned(documented("kms", "Vault")));
        // The top level: what FileConfig accepts (its unknown-field error lists them).
        let err = toml::from_str::<FileConfig>("no_such_option = 1").unwrap_err().to_string();
        for name in documented("", "") {
            assert!(err.contains(&format!("`{name}`")), "{name}: {err}");
        }
        for table in ["server", "kms"] {
            assert!(err.contains(&format!("`{table}`")), "{table}: {err}");
        }
    }

    fn owned(names: BTreeSet<&'static str>) -> BTreeSet<String> {
        names.into_iter().map(str::to_owned).collect()
    }

    #[test]
    fn docs_configuration_md_is_generated_from_this_reference() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        if std::env::var_os("KMS_WRITE_CONFIG_DOC").is_some() {
            std::fs::write(&path, markdown()).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == markdown(),
            "docs/configuration.md is out of date: KMS_WRITE_CONFIG_DOC=1 cargo test -p kms-cli --bin kms config_reference"
        );
    }
}
