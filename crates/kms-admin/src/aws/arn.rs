//! Key references as AWS clients write them, and the ARNs the server answers with.
//!
//! Inputs accept a bare key id, a key ARN (`arn:<partition>:kms:<region>:<account>:key/<id>`),
//! `alias/<name>` and an alias ARN (`...:alias/<name>`). Answers always carry key ARNs: the AWS
//! Encryption SDK refuses a `KeyId` that is not one.

use super::errors::AwsError;
use super::settings::AwsSettings;

/// Longest `KeyId` the model allows.
pub const MAX_KEY_REF_LEN: usize = 2048;

/// What a `KeyId` input names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// A key by its id.
    Key(String),
    /// An alias by its name (without `alias/`).
    Alias(String),
}

impl AwsSettings {
    /// `arn:<partition>:kms:<region>:<account>:key/<id>`.
    pub fn key_arn(&self, key_id: &str) -> String {
        self.arn("key/", key_id)
    }

    /// `arn:<partition>:kms:<region>:<account>:alias/<name>`.
    pub fn alias_arn(&self, name: &str) -> String {
        self.arn("alias/", name)
    }

    /// `arn:<partition>:kms:<region>:<account>:<kind><name>`, pushed into one buffer (every
    /// AWS answer names its key by ARN).
    fn arn(&self, kind: &str, name: &str) -> String {
        let parts = ["arn:", &self.partition, ":kms:", &self.region, ":", &self.account_id, ":", kind, name];
        let mut arn = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        for part in parts {
            arn.push_str(part);
        }
        arn
    }

    /// Reads a `KeyId` input. An ARN of another partition, region or account names nothing
    /// here (`NotFoundException`); a malformed ARN is `InvalidArnException`.
    pub fn parse_key_ref(&self, field: &str, input: &str) -> Result<KeyRef, AwsError> {
        if input.is_empty() || input.len() > MAX_KEY_REF_LEN {
            return Err(AwsError::validation(format!("{field} must be 1 to {MAX_KEY_REF_LEN} characters")));
        }
        if let Some(rest) = input.strip_prefix("arn:") {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            let [partition, service, region, account, resource] = parts[..] else {
                return Err(AwsError::client("InvalidArnException", format!("{field}: {input} is not an ARN")));
            };
            if service != "kms" || partition.is_empty() || region.is_empty() || account.is_empty() {
                return Err(AwsError::client("InvalidArnException", format!("{field}: {input} is not a KMS ARN")));
            }
            if partition != self.partition || region != self.region || account != self.account_id {
                return Err(AwsError::not_found(format!(
                    "{input} is not in this server's partition, region and account"
                )));
            }
            return match resource.split_once('/') {
                Some(("key", id)) if !id.is_empty() => Ok(KeyRef::Key(id.to_owned())),
                Some(("alias", name)) if !name.is_empty() => Ok(KeyRef::Alias(name.to_owned())),
                _ => Err(AwsError::client("InvalidArnException", format!("{field}: {input} names no key or alias"))),
            };
        }
        match input.strip_prefix("alias/") {
            Some("") => Err(AwsError::validation(format!("{field}: the alias name is empty"))),
            Some(name) => Ok(KeyRef::Alias(name.to_owned())),
            None => Ok(KeyRef::Key(input.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AwsSettings {
        AwsSettings::default()
    }

    #[test]
    fn every_input_form_is_read() {
        let s = settings();
        assert_eq!(s.parse_key_ref("KeyId", "k1").unwrap(), KeyRef::Key("k1".into()));
        let arn = s.key_arn("k1");
        assert_eq!(arn, "arn:aws:kms:us-east-1:000000000000:key/k1");
        assert_eq!(s.parse_key_ref("KeyId", &arn).unwrap(), KeyRef::Key("k1".into()));
        assert_eq!(s.parse_key_ref("KeyId", "alias/app").unwrap(), KeyRef::Alias("app".into()));
        assert_eq!(s.parse_key_ref("KeyId", &s.alias_arn("app")).unwrap(), KeyRef::Alias("app".into()));
    }

    #[test]
    fn bad_and_foreign_references_have_their_aws_names() {
        let s = settings();
        let name = |input: &str| s.parse_key_ref("KeyId", input).unwrap_err().type_name;
        assert_eq!(name(""), "ValidationException");
        assert_eq!(name(&"k".repeat(2049)), "ValidationException");
        assert_eq!(name("alias/"), "ValidationException");
        assert_eq!(name("arn:aws:kms:us-east-1"), "InvalidArnException");
        assert_eq!(name("arn:aws:s3:us-east-1:000000000000:key/k"), "InvalidArnException");
        assert_eq!(name("arn:aws:kms:us-east-1:000000000000:grant/k"), "InvalidArnException");
        assert_eq!(name("arn:aws:kms:eu-west-1:000000000000:key/k"), "NotFoundException");
        assert_eq!(name("arn:aws:kms:us-east-1:111111111111:key/k"), "NotFoundException");
    }
}
