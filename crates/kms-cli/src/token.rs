//! Where a client command's bearer token comes from, and what the user is told about it.
//!
//! In order: `--token` / `KMS_TOKEN`, `--token-file` / `KMS_TOKEN_FILE`, then the bootstrap
//! admin token `./kms-data/admin.token` that `kms serve` writes, but that one only when the
//! server URL is a loopback address: the local admin token never leaves the machine unless a
//! flag names it. The source is said on stderr at `-v`, and a refused request (401) says which
//! token was sent, or that none was found and where it was looked for.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use http::Uri;
use zeroize::Zeroizing;

use crate::cli::GlobalArgs;
use crate::client::CliError;

/// Default location of the bootstrap admin token (`kms serve` with default options).
pub(crate) const DEFAULT_TOKEN_FILE: &str = "kms-data/admin.token";

/// A token and a description of where it came from (for `-v` and for 401 messages).
#[derive(Debug)]
pub(crate) struct ResolvedToken {
    /// The token, when one was found.
    pub(crate) token: Option<Zeroizing<String>>,
    /// What to tell the user when the server answers 401.
    pub(crate) on_refusal: String,
    /// Where the token came from (or why none is sent), for `-v`.
    pub(crate) source: String,
}

/// Finds the token for `global.url` from the options and the current folder.
pub(crate) fn resolve(global: &GlobalArgs) -> Result<ResolvedToken, CliError> {
    if let Some(token) = &global.token {
        return Ok(found(Zeroizing::new(token.expose_secret().to_owned()), "--token / KMS_TOKEN".into()));
    }
    if let Some(path) = &global.token_file {
        return Ok(found(read_token(path)?, format!("the token file {}", path.display())));
    }
    let default = Path::new(DEFAULT_TOKEN_FILE);
    let shown = absolute(default);
    let loopback = is_loopback_url(&global.url);
    if default.exists() && loopback {
        return Ok(found(read_token(default)?, format!("the token file {}", shown.display())));
    }
    let (why, source) = if default.exists() {
        (
            format!(
                "{} is only sent to a loopback --url; pass --token-file {} to send it to {}",
                shown.display(),
                DEFAULT_TOKEN_FILE,
                global.url
            ),
            format!("no token: {} is only used with a loopback --url", shown.display()),
        )
    } else {
        (format!("there is no {} here", shown.display()), "no token found".into())
    };
    Ok(ResolvedToken {
        token: None,
        on_refusal: format!(
            "no token was found (looked for --token, KMS_TOKEN, --token-file, KMS_TOKEN_FILE, then \
             ./{DEFAULT_TOKEN_FILE}: {why})"
        ),
        source,
    })
}

fn found(token: Zeroizing<String>, source: String) -> ResolvedToken {
    ResolvedToken { token: Some(token), on_refusal: format!("the server refused the token from {source}"), source }
}

fn absolute(path: &Path) -> PathBuf {
    std::env::current_dir().map(|dir| dir.join(path)).unwrap_or_else(|_| path.to_owned())
}

fn read_token(path: &Path) -> Result<Zeroizing<String>, CliError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| CliError::usage(format!("token file {}: {e}", path.display())))?,
    );
    Ok(Zeroizing::new(text.trim().to_owned()))
}

/// Whether `url` names this machine: `localhost`, 127.0.0.0/8 or `::1`.
pub(crate) fn is_loopback_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<Uri>() else { return false };
    match uri.host() {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        Some(host) => {
            host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// The warning for a token about to travel in the clear to another machine, if it would.
pub(crate) fn plain_http_warning(url: &str, sends_token: bool) -> Option<String> {
    let plain = url.parse::<Uri>().is_ok_and(|uri| uri.scheme_str() == Some("http"));
    (sends_token && plain && !is_loopback_url(url)).then(|| {
        format!(
            "warning: the bearer token is sent over plain http to {url}, readable by anyone on the path; \
             use an https:// URL"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_recognised() {
        for url in ["http://127.0.0.1:7373", "http://localhost:1", "http://[::1]:7373", "https://127.0.0.2"] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in ["http://10.0.0.1:7373", "http://kms.example.com", "http://127.0.0.1.example.com", "nonsense"] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }

    #[test]
    fn a_token_over_plain_http_to_another_host_is_warned_about() {
        assert!(plain_http_warning("http://10.0.0.1:7373", true).unwrap().contains("plain http"));
        assert!(plain_http_warning("http://10.0.0.1:7373", false).is_none());
        assert!(plain_http_warning("https://10.0.0.1:7373", true).is_none());
        assert!(plain_http_warning("http://127.0.0.1:7373", true).is_none());
    }
}
