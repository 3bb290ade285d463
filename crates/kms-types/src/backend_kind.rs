//! The open set of backend kinds: [`KmsBackend`] names one (`local`, `vault`, or any name a
//! crate outside this workspace registers a factory under), and [`CustomBackendConfig`]
//! carries the settings of a backend this crate does not know, until the factory registered
//! for it reads them as its own typed [`BackendSettings`].
//!
//! Settings of a custom backend arrive from JSON (`POST /kms/v1/configure`), TOML (the `[kms]`
//! table) or the persisted configuration; all three are self-describing, so they are kept as a
//! JSON object here (its strings are zeroized on drop: they may hold a token) and parsed into
//! the factory's type by [`CustomBackendConfig::settings`].

use std::borrow::Cow;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::api_types::{
    ConfigureCustomKmsRequest, ConfigureKmsRequest, ConfigureLocalKmsRequest, ConfigureVaultKmsRequest,
    MANAGER_OPTIONS, ManagerOptions,
};
use crate::config::{BackendConfig, LocalConfig, VaultConfig};
use crate::error::{KmsError, Result};
use crate::secret::REDACTED;

/// Longest accepted backend name.
pub(crate) const MAX_BACKEND_NAME_LEN: usize = 64;

/// Which backend holds the keys: `local`, `vault`, or a name registered by another crate
/// (`kms_core::backends::BackendRegistry`). Serialized as its name.
///
/// A name is 1 to 64 characters of `a-z`, `0-9`, `-` and `_`, starting with a letter; it is the
/// `backend_type` of the admin API and the `type` of a `backend_config`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KmsBackend(Cow<'static, str>);

// `KmsBackend::Local` and `KmsBackend::Vault` keep the spelling of the closed enum this type
// replaced, which the spec's samples use (`backend: KmsBackend::Vault`).
#[allow(non_upper_case_globals)]
impl KmsBackend {
    /// Key files on local disk.
    pub const Local: Self = Self(Cow::Borrowed("local"));
    /// HashiCorp Vault / OpenBao (Transit + KV v2).
    pub const Vault: Self = Self(Cow::Borrowed("vault"));

    /// A backend kind named by a constant, checked at compile time when used in a `const`:
    /// `const MINE: KmsBackend = KmsBackend::from_static("mine");`.
    ///
    /// # Panics
    /// If `name` is not a valid backend name (see the type's docs).
    pub const fn from_static(name: &'static str) -> Self {
        assert!(is_backend_name(name), "a backend name is 1-64 of a-z, 0-9, '-', '_', starting with a letter");
        Self(Cow::Borrowed(name))
    }

    /// A backend kind from a runtime name; the error names `backend_type`.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if !is_backend_name(&name) {
            return Err(KmsError::invalid_request(
                "backend_type",
                "must be 1 to 64 characters of a-z, 0-9, '-' and '_', starting with a letter",
            ));
        }
        Ok(match name.as_str() {
            "local" => Self::Local,
            "vault" => Self::Vault,
            _ => Self(Cow::Owned(name)),
        })
    }

    /// The backend's name as used in configuration and the admin API (`local`, `vault`, ...).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is one of the kinds this crate describes (`local`, `vault`), whose settings
    /// are [`crate::config::BackendConfig::Local`] and [`crate::config::BackendConfig::Vault`].
    pub fn is_builtin(&self) -> bool {
        *self == Self::Local || *self == Self::Vault
    }
}

const fn is_backend_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_BACKEND_NAME_LEN || !bytes[0].is_ascii_lowercase() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
            return false;
        }
        i += 1;
    }
    true
}

impl fmt::Debug for KmsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KmsBackend({})", self.0)
    }
}

impl fmt::Display for KmsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for KmsBackend {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for KmsBackend {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::new(name).map_err(|_| {
            serde::de::Error::custom(
                "`backend_type` must be 1 to 64 characters of a-z, 0-9, '-' and '_', starting with a letter",
            )
        })
    }
}

/// The typed settings of a backend registered from outside this workspace: what its
/// `backend_config` table (TOML, persisted configuration) or the backend's own fields of a
/// `POST /kms/v1/configure` body deserialize into.
///
/// Field names must not be those the configure body keeps for the manager (`default_key_id`,
/// `timeout_seconds`, `retry_attempts`, `enable_cache`, `max_cached_keys`, `cache_ttl_seconds`,
/// `cache_coherence_seconds`, `tls`) nor `type`/`backend_type`. Deny unknown fields
/// (`#[serde(deny_unknown_fields)]`) so a misspelt option is an error, not a default.
pub trait BackendSettings: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Checks the values; the error names the field (`backend_config.<name>`).
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// A copy with every secret replaced by `[REDACTED]`, for `GET /kms/v1/config` and logs.
    fn redacted(&self) -> Self;
}

/// The settings of a backend kind this crate does not describe, kept as a JSON object until its
/// factory reads them as its own [`BackendSettings`] type.
/// Debug output shows only the names of the settings, never their values.
#[derive(Clone, PartialEq, Eq)]
pub struct CustomBackendConfig {
    backend_type: KmsBackend,
    settings: serde_json::Map<String, serde_json::Value>,
}

impl CustomBackendConfig {
    /// The settings `settings` (serialized to a JSON object) of the backend kind `backend_type`,
    /// which must not be a built-in kind (their settings have types of their own).
    pub fn new<S: BackendSettings>(backend_type: KmsBackend, settings: &S) -> Result<Self> {
        let value = serde_json::to_value(settings)
            .map_err(|e| KmsError::configuration("backend_config", format!("cannot be serialized: {e}")))?;
        let serde_json::Value::Object(settings) = value else {
            return Err(KmsError::configuration("backend_config", "must serialize to an object"));
        };
        Self::from_map(backend_type, settings)
    }

    /// Settings as read from a configure body or configuration file.
    pub(crate) fn from_map(
        backend_type: KmsBackend,
        settings: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self> {
        if backend_type.is_builtin() {
            return Err(KmsError::configuration(
                "backend_config.type",
                format!("{backend_type} is a built-in backend kind with settings of its own"),
            ));
        }
        Ok(Self { backend_type, settings })
    }

    /// The backend kind these settings are for.
    pub fn backend_type(&self) -> &KmsBackend {
        &self.backend_type
    }

    /// The names of the settings given.
    pub fn setting_names(&self) -> impl Iterator<Item = &str> {
        self.settings.keys().map(String::as_str)
    }

    /// The settings read as the backend's own type, then validated; errors name the field
    /// (`backend_config.<path>`).
    pub fn settings<S: BackendSettings>(&self) -> Result<S> {
        let value = serde_json::Value::Object(self.settings.clone());
        let parsed: S = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            let field = match path.as_str() {
                "." | "" => message
                    .split('`')
                    .nth(1)
                    .map_or_else(|| "backend_config".to_owned(), |f| format!("backend_config.{f}")),
                path => format!("backend_config.{path}"),
            };
            KmsError::configuration(field, message)
        })?;
        parsed.validate()?;
        Ok(parsed)
    }

    /// The same settings with every value hidden: what a configuration whose backend's
    /// factory is not at hand may show (`KmsConfig::redacted`).
    pub fn fully_redacted(&self) -> Self {
        let settings = self.settings.keys().map(|k| (k.clone(), serde_json::Value::from(REDACTED))).collect();
        Self { backend_type: self.backend_type.clone(), settings }
    }

    /// These settings with the backend's own redaction applied ([`BackendSettings::redacted`]).
    pub fn redacted_as<S: BackendSettings>(&self) -> Result<Self> {
        Self::new(self.backend_type.clone(), &self.settings::<S>()?.redacted())
    }
}

impl fmt::Debug for CustomBackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomBackendConfig")
            .field("backend_type", &self.backend_type)
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Drop for CustomBackendConfig {
    fn drop(&mut self) {
        self.settings.values_mut().for_each(zeroize_strings);
    }
}

/// Clears every string inside `value` (settings may hold a token or a password).
fn zeroize_strings(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => zeroize::Zeroize::zeroize(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(zeroize_strings),
        serde_json::Value::Object(map) => map.values_mut().for_each(zeroize_strings),
        _ => {}
    }
}

/// `{"type": <backend_type>, <settings>...}`, the shape of every `backend_config`.
impl Serialize for CustomBackendConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.settings.len() + 1))?;
        map.serialize_entry("type", &self.backend_type)?;
        for (k, v) in &self.settings {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Splits a `backend_config` object into its `type` and the rest (errors as serde words them,
/// so the admin API names the field).
pub(crate) fn take_tag<E: serde::de::Error>(
    map: &mut serde_json::Map<String, serde_json::Value>,
    tag: &'static str,
) -> std::result::Result<KmsBackend, E> {
    let value = map.remove(tag).ok_or_else(|| E::missing_field(tag))?;
    value.as_str().and_then(|name| KmsBackend::new(name).ok()).ok_or_else(|| {
        E::custom(format!("`{tag}` must be a string of 1 to 64 a-z, 0-9, '-' and '_', starting with a letter"))
    })
}

/// The built-in kinds' shapes, derived as they always were.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BuiltinConfigRef<'a> {
    Local(&'a LocalConfig),
    Vault(&'a VaultConfig),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// Unpacked into `BackendConfig` at once (which has the same layout for the same reason).
#[allow(clippy::large_enum_variant)]
enum BuiltinConfig {
    Local(LocalConfig),
    Vault(VaultConfig),
}

impl Serialize for BackendConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Local(local) => BuiltinConfigRef::Local(local).serialize(serializer),
            Self::Vault(vault) => BuiltinConfigRef::Vault(vault).serialize(serializer),
            Self::Custom(custom) => custom.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for BackendConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = serde_json::Map::deserialize(deserializer)?;
        let backend = take_tag::<D::Error>(&mut map, "type")?;
        if backend.is_builtin() {
            map.insert("type".into(), backend.as_str().into());
            return match BuiltinConfig::deserialize(serde_json::Value::Object(map)).map_err(D::Error::custom)? {
                BuiltinConfig::Local(local) => Ok(Self::Local(local)),
                BuiltinConfig::Vault(vault) => Ok(Self::Vault(vault)),
            };
        }
        CustomBackendConfig::from_map(backend, map).map(Self::Custom).map_err(D::Error::custom)
    }
}

#[derive(Serialize)]
#[serde(tag = "backend_type", rename_all = "snake_case")]
enum BuiltinRequestRef<'a> {
    Local(&'a ConfigureLocalKmsRequest),
    Vault(&'a ConfigureVaultKmsRequest),
}

#[derive(Deserialize)]
#[serde(tag = "backend_type", rename_all = "snake_case")]
enum BuiltinRequest {
    Local(ConfigureLocalKmsRequest),
    Vault(ConfigureVaultKmsRequest),
}

impl Serialize for ConfigureKmsRequest {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap};
        let r = match self {
            Self::Local(local) => return BuiltinRequestRef::Local(local).serialize(serializer),
            Self::Vault(vault) => return BuiltinRequestRef::Vault(vault).serialize(serializer),
            Self::Custom(r) => r,
        };
        let serde_json::Value::Object(options) = serde_json::to_value(&r.options).map_err(S::Error::custom)? else {
            unreachable!("a struct serializes to an object")
        };
        let mut map = serializer.serialize_map(Some(1 + options.len() + r.backend.settings.len()))?;
        map.serialize_entry("backend_type", &r.backend.backend_type)?;
        for (k, v) in options.iter().chain(&r.backend.settings) {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ConfigureKmsRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = serde_json::Map::deserialize(deserializer)?;
        let backend = take_tag::<D::Error>(&mut map, "backend_type")?;
        if backend.is_builtin() {
            map.insert("backend_type".into(), backend.as_str().into());
            return match BuiltinRequest::deserialize(serde_json::Value::Object(map)).map_err(D::Error::custom)? {
                BuiltinRequest::Local(local) => Ok(Self::Local(local)),
                BuiltinRequest::Vault(vault) => Ok(Self::Vault(vault)),
            };
        }
        let options: serde_json::Map<_, _> =
            MANAGER_OPTIONS.iter().filter_map(|name| map.remove_entry(*name)).collect();
        let options = ManagerOptions::deserialize(serde_json::Value::Object(options)).map_err(D::Error::custom)?;
        let backend = CustomBackendConfig::from_map(backend, map).map_err(D::Error::custom)?;
        Ok(Self::Custom(ConfigureCustomKmsRequest { backend, options }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Mine {
        endpoint: String,
        password: crate::secret::SecretString,
        #[serde(default)]
        shards: u8,
    }

    impl BackendSettings for Mine {
        fn validate(&self) -> Result<()> {
            if self.shards > 8 {
                return Err(KmsError::configuration("backend_config.shards", "must be at most 8"));
            }
            Ok(())
        }
        fn redacted(&self) -> Self {
            Self { endpoint: self.endpoint.clone(), password: REDACTED.into(), shards: self.shards }
        }
    }

    const MINE: KmsBackend = KmsBackend::from_static("mine");

    #[test]
    fn names_are_checked_and_builtins_have_one_representation() {
        assert_eq!(KmsBackend::new("local").unwrap(), KmsBackend::Local);
        assert_eq!(KmsBackend::new("vault").unwrap(), KmsBackend::Vault);
        assert_eq!(KmsBackend::new("mine").unwrap(), MINE);
        assert!(!MINE.is_builtin() && KmsBackend::Local.is_builtin());
        for bad in ["", "Mine", "1st", "a b", "a/b", &"x".repeat(65)] {
            let err = KmsBackend::new(bad).unwrap_err();
            assert!(matches!(err, KmsError::InvalidRequest { ref field, .. } if field == "backend_type"), "{bad}");
        }
        assert_eq!(serde_json::to_string(&KmsBackend::Vault).unwrap(), r#""vault""#);
        assert!(serde_json::from_str::<KmsBackend>(r#""NO""#).unwrap_err().to_string().contains("`backend_type`"));
    }

    #[test]
    fn custom_settings_round_trip_typed_and_hide_their_values() {
        let mine = Mine { endpoint: "https://m".into(), password: "hunter2-secret".into(), shards: 2 };
        let custom = CustomBackendConfig::new(MINE, &mine).unwrap();
        assert_eq!(custom.settings::<Mine>().unwrap(), mine);
        assert!(!format!("{custom:?}").contains("hunter2"));
        let json = serde_json::to_value(&custom).unwrap();
        assert_eq!(json["type"], "mine");
        let redacted = serde_json::to_string(&custom.redacted_as::<Mine>().unwrap()).unwrap();
        assert!(!redacted.contains("hunter2") && redacted.contains("https://m"), "{redacted}");
        let hidden = serde_json::to_string(&custom.fully_redacted()).unwrap();
        assert!(!hidden.contains("hunter2") && !hidden.contains("https://m"), "{hidden}");
    }

    #[test]
    fn a_configure_body_for_a_custom_backend_splits_manager_options_from_settings() {
        let json = r#"{"backend_type":"mine","endpoint":"https://m","password":"pw-secret","timeout_seconds":9}"#;
        let request: ConfigureKmsRequest = serde_json::from_str(json).unwrap();
        let ConfigureKmsRequest::Custom(custom) = &request else { panic!("{request:?}") };
        assert_eq!(custom.options.timeout_seconds, Some(9));
        assert_eq!(custom.backend.setting_names().collect::<Vec<_>>(), ["endpoint", "password"]);
        let config = crate::config::KmsConfig::from(&request);
        assert_eq!(config.backend, MINE);
        assert_eq!(config.timeout, std::time::Duration::from_secs(9));
        config.validate().unwrap();
        let crate::config::BackendConfig::Custom(settings) = &config.backend_config else { panic!() };
        assert_eq!(settings.settings::<Mine>().unwrap().password.expose_secret(), "pw-secret");
        // Round trips: the request, and the configuration (as persisted).
        let again: ConfigureKmsRequest = serde_json::from_value(serde_json::to_value(&request).unwrap()).unwrap();
        assert_eq!(again, request);
        let persisted = serde_json::to_value(&config).unwrap();
        assert_eq!(persisted["backend"], "mine");
        assert_eq!(persisted["backend_config"]["type"], "mine");
        let back: crate::config::KmsConfig = serde_json::from_value(persisted).unwrap();
        assert_eq!(back, config);
        // A bad manager option is still an error of that option.
        let bad = r#"{"backend_type":"mine","timeout_seconds":"soon"}"#;
        let err = serde_json::from_str::<ConfigureKmsRequest>(bad).unwrap_err();
        // The message gives the type but (today) not the field's name.
        assert!(err.is_data() && err.to_string().contains(r#"invalid type: string "soon", expected u64"#), "{err}");
        // Built-in kinds keep their own shapes (unknown fields refused).
        let local = r#"{"backend_type":"local","key_dir":"/k","master_key":{"type":"env","var":"X"},"endpoint":1}"#;
        assert!(serde_json::from_str::<ConfigureKmsRequest>(local).unwrap_err().to_string().contains("`endpoint`"));
    }

    #[test]
    fn a_configure_body_carries_a_custom_backend_with_its_extra_options() {
        let json = r#"{"backend_type":"mine","endpoint":"e","password":"p","cache_coherence_seconds":1}"#;
        let body: crate::api_types::ConfigureBody = serde_json::from_str(json).unwrap();
        let config = body.to_config().unwrap();
        assert_eq!(config.cache_config.coherence, std::time::Duration::from_secs(1));
        let crate::config::BackendConfig::Custom(custom) = &config.backend_config else { panic!() };
        assert_eq!(custom.setting_names().collect::<Vec<_>>(), ["endpoint", "password"]);
        let tls = r#"{"backend_type":"mine","endpoint":"e","password":"p","tls":{}}"#;
        let err = serde_json::from_str::<crate::api_types::ConfigureBody>(tls).unwrap().to_config().unwrap_err();
        assert!(matches!(err, KmsError::Configuration { ref field, .. } if field == "tls"), "{err:?}");
    }

    #[test]
    fn bad_custom_settings_name_the_field() {
        let field = |settings: serde_json::Value| {
            let serde_json::Value::Object(map) = settings else { unreachable!() };
            match CustomBackendConfig::from_map(MINE, map).unwrap().settings::<Mine>().unwrap_err() {
                KmsError::Configuration { field, .. } => field,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(field(serde_json::json!({"endpoint": "e"})), "backend_config.password");
        assert_eq!(field(serde_json::json!({"endpoint": "e", "password": "p", "colour": 1})), "backend_config.colour");
        assert_eq!(field(serde_json::json!({"endpoint": 5, "password": "p"})), "backend_config.endpoint");
        assert_eq!(field(serde_json::json!({"endpoint": "e", "password": "p", "shards": 9})), "backend_config.shards");
        let err = CustomBackendConfig::new(
            KmsBackend::Local,
            &Mine { endpoint: "e".into(), password: "p".into(), shards: 0 },
        );
        assert!(matches!(err, Err(KmsError::Configuration { .. })));
    }
}
