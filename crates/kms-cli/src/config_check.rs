//! `kms config example` and `kms config check`: the reference file, and the checks `kms serve`
//! would make on a file before it binds or creates anything, each error naming its option.

use std::io::Read;
use std::path::Path;

use crate::cli::ConfigCommand;
use crate::client::CliError;
use crate::serve::{FileConfig, toml_error};

/// Runs `kms config ...`.
pub(crate) fn run(cmd: ConfigCommand) -> Result<(), CliError> {
    match cmd {
        ConfigCommand::Example => {
            print!("{}", crate::config_reference::example());
            Ok(())
        }
        ConfigCommand::Reference => {
            print!("{}", crate::config_reference::markdown());
            Ok(())
        }
        ConfigCommand::Check { file } => {
            let config = load(&file)?;
            check(&config).map_err(|e| CliError::usage(format!("{}: {e}", shown(&file))))?;
            println!("{}: ok", shown(&file));
            Ok(())
        }
    }
}

fn shown(path: &Path) -> String {
    if path.as_os_str() == "-" { "stdin".into() } else { path.display().to_string() }
}

/// Reads and parses a `kms.toml` (`-` for stdin). Syntax errors, unknown options and values of
/// the wrong type name the line and the option, never the line's text (it may hold a secret).
pub(crate) fn load(path: &Path) -> Result<FileConfig, CliError> {
    let text = zeroize::Zeroizing::new(if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| CliError::local(format!("stdin: {e}")))?;
        text
    } else {
        std::fs::read_to_string(path).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?
    });
    toml::from_str::<FileConfig>(&text)
        .map_err(|e| CliError::usage(format!("{}: {}", shown(path), toml_error(&e, &text))))
}

/// The checks beyond parsing: the limits of `[server]`, the identities' hashes and grants, the
/// log filter, and the `[kms]` service configuration. File paths are not opened here.
pub(crate) fn check(config: &FileConfig) -> Result<(), String> {
    config.server.validate()?;
    if let Some(log) = &config.log {
        tracing_subscriber::EnvFilter::try_new(log).map_err(|e| format!("option `log`: {e}"))?;
    }
    kms::admin::auth::Authenticator::new(&config.server.identities)
        .map_err(|e| format!("option `server.identities`: {e}"))?;
    if let Some(request) = &config.kms {
        request.to_config().and_then(|config| config.validate()).map_err(|e| format!("option `kms`: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str::<FileConfig>(text).map_err(|e| toml_error(&e, text))
    }

    #[test]
    fn parse_errors_name_the_option_without_its_value() {
        let e = parse("[server]\nmax_body_bytes = \"big\"\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("`server.max_body_bytes`"), "{e}");
        let e = parse("log = 5\n").unwrap_err();
        assert!(e.contains("`log`"), "{e}");
        let e = parse("[server]\nlistn = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(e.contains("listn"), "{e}");
        let e = parse("[kms]\nbackend_type = \"vault\"\naddress = \"http://a\"\nauth_method = { type = \"token\", token = \"s.secret\", x = 1 }\n")
            .unwrap_err();
        assert!(e.contains("`x`") && e.contains("`kms`") && !e.contains("s.secret"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_option() {
        let e = check(&parse("[server]\nmax_body_bytes = 10\n").unwrap()).unwrap_err();
        assert!(e.contains("server.max_body_bytes"), "{e}");
        let e = check(&parse("log = \"[[[\"\n").unwrap()).unwrap_err();
        assert!(e.contains("`log`"), "{e}");
        let e = check(&parse("[[server.identities]]\nname = \"a\"\ntoken_sha256 = \"nothex\"\nallow = []\n").unwrap())
            .unwrap_err();
        assert!(e.contains("server.identities") && e.contains("token_sha256"), "{e}");
        let e = check(
            &parse("[kms]\nbackend_type = \"local\"\nkey_dir = \"k\"\nmaster_key = { type = \"env\", var = \"V\" }\nmax_cached_keys = 0\n")
                .unwrap(),
        )
        .unwrap_err();
        assert!(e.contains("kms") && e.contains("max"), "{e}");
        check(&parse(&crate::config_reference::example()).unwrap()).unwrap();
    }

    #[test]
    fn the_production_configuration_in_docs_deployment_md_passes_the_check() {
        let doc = include_str!("../../../docs/deployment.md");
        let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let end = start + doc[start..].find("```").unwrap();
        let text = doc[start..end].replace("<from kms token generate>", &"ab".repeat(32));
        let config = parse(&text).unwrap();
        check(&config).unwrap();
        assert!(config.server.tls.is_some() && config.kms.is_some());
    }
}
