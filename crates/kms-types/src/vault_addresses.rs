//! [`VaultAddresses`]: the node URLs of one Vault / OpenBao cluster.
//!
//! One address stays valid everywhere (`"https://vault:8200"`); several are written as a
//! comma-separated string (`"https://a:8200,https://b:8200"`) or, in JSON and TOML, as an array.
//! The type implements `FromStr` and `From<&str>` so configuration written
//! for one address (`"…".parse()`, `"…".into()`) keeps compiling. Parsing only splits; the URLs
//! are checked by [`VaultAddresses::validate`] (through `KmsConfig::validate`), which names the
//! field of the first bad one.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{KmsError, Result};

/// The node URLs of one Vault cluster, in the order given (duplicates removed).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct VaultAddresses(Vec<String>);

impl VaultAddresses {
    /// The addresses from a list of URLs (trailing slashes and duplicates dropped).
    pub fn new<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list: Vec<String> = Vec::new();
        for url in urls {
            let url = url.as_ref().trim().trim_end_matches('/');
            if !url.is_empty() && !list.iter().any(|u| u == url) {
                list.push(url.to_owned());
            }
        }
        Self(list)
    }

    /// The URLs, without trailing slash.
    pub fn urls(&self) -> &[String] {
        &self.0
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no address is given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any address is `https://`.
    pub fn any_https(&self) -> bool {
        self.0.iter().any(|u| u.starts_with("https://"))
    }

    /// Checks every URL: `http`/`https`, a host, no credentials, no path, one scheme for all;
    /// a plain-`http://` address must name a loopback host (a Vault token must never cross a
    /// network in the clear).
    pub fn validate(&self) -> Result<()> {
        let field = "backend_config.address";
        if self.0.is_empty() {
            return Err(KmsError::configuration(field, "must name at least one Vault node"));
        }
        let mut scheme: Option<String> = None;
        for raw in &self.0 {
            let url = url::Url::parse(raw)
                .map_err(|e| KmsError::configuration(field, format!("{raw}: is not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(KmsError::configuration(field, "must be http:// or https:// URLs"));
            }
            let Some(host) = url.host() else {
                return Err(KmsError::configuration(field, "must name a host"));
            };
            if !url.username().is_empty() || url.password().is_some() {
                return Err(KmsError::configuration(field, "must not carry credentials"));
            }
            if url.path() != "/" || url.query().is_some() {
                return Err(KmsError::configuration(field, "must be a node's base URL (no path or query)"));
            }
            if url.scheme() == "http" && !is_loopback(&host) {
                return Err(KmsError::configuration(
                    field,
                    format!(
                        "{raw}: plain http:// is only accepted on a loopback host; use https:// (the Vault token would travel in the clear)"
                    ),
                ));
            }
            match &scheme {
                Some(s) if s != url.scheme() => {
                    return Err(KmsError::configuration(field, "must all use the same scheme"));
                }
                Some(_) => {}
                None => scheme = Some(url.scheme().to_owned()),
            }
        }
        Ok(())
    }
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

impl FromStr for VaultAddresses {
    type Err = KmsError;

    /// Splits a comma-separated list; the URLs are checked by [`VaultAddresses::validate`].
    fn from_str(s: &str) -> Result<Self> {
        let addresses = Self::from(s);
        if addresses.is_empty() {
            return Err(KmsError::configuration("backend_config.address", "must name at least one Vault node"));
        }
        Ok(addresses)
    }
}

impl From<&str> for VaultAddresses {
    fn from(s: &str) -> Self {
        Self::new(s.split(','))
    }
}

impl From<String> for VaultAddresses {
    fn from(s: String) -> Self {
        Self::from(s.as_str())
    }
}

impl From<Vec<String>> for VaultAddresses {
    fn from(urls: Vec<String>) -> Self {
        Self::new(urls.iter().flat_map(|u| u.split(',')))
    }
}

impl fmt::Display for VaultAddresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// One address serializes as a string (as before), several as an array.
impl Serialize for VaultAddresses {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => serializer.serialize_str(one),
            many => many.serialize(serializer),
        }
    }
}

/// A string (one URL or comma-separated URLs) or an array of strings.
impl<'de> Deserialize<'de> for VaultAddresses {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct OneOrMany;
        impl<'de> Visitor<'de> for OneOrMany {
            type Value = VaultAddresses;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a URL, comma-separated URLs, or an array of URLs")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
                Ok(VaultAddresses::from(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
                let mut urls = Vec::new();
                while let Some(url) = seq.next_element::<String>()? {
                    urls.push(url);
                }
                Ok(VaultAddresses::from(urls))
            }
        }
        deserializer.deserialize_any(OneOrMany)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_comma_separated_or_array_give_the_same_list() {
        let one: VaultAddresses = serde_json::from_str(r#""https://a:8200/""#).unwrap();
        assert_eq!(one.urls(), ["https://a:8200"]);
        let csv: VaultAddresses = serde_json::from_str(r#""https://a:8200, https://b:8200""#).unwrap();
        let arr: VaultAddresses =
            serde_json::from_str(r#"["https://a:8200","https://b:8200","https://a:8200"]"#).unwrap();
        assert_eq!(csv, arr);
        assert_eq!(arr.len(), 2);
        assert_eq!(serde_json::to_string(&one).unwrap(), r#""https://a:8200""#);
        assert_eq!(serde_json::to_string(&arr).unwrap(), r#"["https://a:8200","https://b:8200"]"#);
        assert_eq!("https://a:8200,https://b:8200".parse::<VaultAddresses>().unwrap(), arr);
        assert!(matches!("".parse::<VaultAddresses>(), Err(KmsError::Configuration { .. })));
        let err = serde_json::from_str::<VaultAddresses>("42").unwrap_err();
        assert!(err.is_data(), "{err}");
    }

    #[test]
    fn plain_http_is_refused_off_loopback() {
        for ok in ["http://127.0.0.1:8200", "http://localhost:8200", "http://[::1]:8200", "https://vault.example.com"] {
            VaultAddresses::from(ok).validate().unwrap();
        }
        for bad in [
            "http://vault.example.com:8200",
            "http://10.0.0.5:8200",
            "https://a:8200,http://127.0.0.1:8200",
            "https://u:p@a:8200",
            "https://a:8200/v1",
            "ftp://a",
        ] {
            let err = VaultAddresses::from(bad).validate().unwrap_err();
            assert!(
                matches!(err, KmsError::Configuration { ref field, .. } if field == "backend_config.address"),
                "{bad}"
            );
        }
        assert!(matches!(VaultAddresses::default().validate(), Err(KmsError::Configuration { .. })));
    }
}
