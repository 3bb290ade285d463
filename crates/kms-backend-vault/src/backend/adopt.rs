//! Adoption (`kms migrate vault-transit`): a Transit key that RustFS or any other tool made in
//! kms's mount gets a kms record, explicitly and only after its parameters pass the checks of
//! [`refusal`]. The only path by which kms starts using a Transit key it did not make.
//!
//! Several versions are accepted: Transit keeps every version from `min_decryption_version`
//! on, a kms ciphertext names its version (`vault:v<N>:`), and the record's `current_version`
//! starts at Transit's `latest_version`.

use kms_types::adopt::{AdoptKeyRequest, AdoptKeyResponse, AdoptOutcome};

use super::*;

/// The operation name of an adoption in notes and logs.
const ADOPT_KEY: &str = "adopt_key";

impl Inner {
    /// Checks `request.key_id`'s Transit key and, with `request.commit`, records it as a kms
    /// key (`Enabled`, origin `kms`: Transit generated its material). A refusal is an answer.
    pub(super) async fn adopt(&self, request: AdoptKeyRequest) -> Result<AdoptKeyResponse> {
        request.validate()?;
        let key_id = request.key_id.clone();
        if let Some(answer) = self.adoption_record_answer(&key_id).await? {
            return Ok(answer);
        }
        let Some(transit) = self.transit_key_parameters(&key_id).await? else {
            return Ok(AdoptKeyResponse::refused(
                key_id,
                format!("no Transit key of this name in the {} mount", self.transit),
            ));
        };
        if let Some(reason) = refusal(&transit) {
            return Ok(AdoptKeyResponse::refused(key_id, reason));
        }
        let record = adopted_record(&request, &transit);
        if !request.commit {
            return Ok(AdoptKeyResponse {
                key_id,
                outcome: AdoptOutcome::Adoptable,
                reason: None,
                key_metadata: Some(record.metadata()),
            });
        }
        match self.write(&record, 0, ADOPT_KEY).await {
            Ok(_) => {}
            Err(e) if e.says("check-and-set") => {
                // Someone wrote a record meanwhile: answer as for a record found at first.
                return match self.adoption_record_answer(&key_id).await? {
                    Some(answer) => Ok(answer),
                    None => Err(KmsError::backend(format!("adopt {key_id}: its record changed during the adoption"))),
                };
            }
            Err(e) => return Err(e.into_kms("write key metadata")),
        }
        // The parameters may have changed between the check and the write: check again, and
        // take the record back if the key no longer passes.
        let now = self.transit_key_parameters(&key_id).await?;
        if let Some(reason) =
            now.as_ref().map_or(Some("the Transit key disappeared during the adoption".into()), refusal)
        {
            self.release_claim(&key_id).await;
            return Ok(AdoptKeyResponse::refused(key_id, reason));
        }
        tracing::info!(key_id = %key_id, versions = record.current_version, "Transit key adopted");
        Ok(AdoptKeyResponse {
            key_id,
            outcome: AdoptOutcome::Adopted,
            reason: None,
            key_metadata: Some(record.metadata()),
        })
    }

    /// The answer when kms already has a record of `key_id`, `None` when it has none.
    async fn adoption_record_answer(&self, key_id: &str) -> Result<Option<AdoptKeyResponse>> {
        let answer = match self.read_record(key_id).await {
            Ok(Loaded::Record(record, _)) if record.adopted => AdoptKeyResponse {
                key_id: key_id.to_owned(),
                outcome: AdoptOutcome::AlreadyAdopted,
                reason: None,
                key_metadata: Some(record.metadata()),
            },
            Ok(Loaded::Record(record, _)) => AdoptKeyResponse::refused(
                key_id,
                format!(
                    "kms already has a key of this id (origin {}), made or imported by kms: nothing to adopt",
                    match record.origin {
                        KeyOrigin::External => "external",
                        _ => "kms",
                    }
                ),
            ),
            Ok(Loaded::Unreadable { .. }) => {
                AdoptKeyResponse::refused(key_id, "kms has an unreadable record of this id; it is left alone")
            }
            Err(e) if e.status() == Some(404) => return Ok(None),
            Err(e) => return Err(e.into_kms("read key metadata")),
        };
        Ok(Some(answer))
    }

    /// `GET transit/keys/<key_id>`'s `data`, or `None` when Transit has no such key.
    async fn transit_key_parameters(&self, key_id: &str) -> Result<Option<Value>> {
        let path = format!("{}/keys/{key_id}", self.transit);
        match self.call(Route::Active, Method::Get, &path, None).await {
            Ok(reply) => Ok(Some(reply.and_then(|mut v| v.get_mut("data").map(Value::take)).unwrap_or(Value::Null))),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e.into_kms("read the Transit key")),
        }
    }
}

/// Why a Transit key (its `GET transit/keys/<name>` data) cannot become a kms key, or `None`
/// when it can: kms's keys are `aes256-gcm96`, never exportable, without plaintext backup, and
/// not derived (kms sends no derivation context; a convergent key is derived too).
pub(super) fn refusal(transit: &Value) -> Option<String> {
    let flag = |name: &str| transit.get(name).and_then(Value::as_bool);
    match transit.get("type").and_then(Value::as_str) {
        Some("aes256-gcm96") => {}
        Some(other) => return Some(format!("type {other}: kms keys are aes256-gcm96")),
        None => return Some("Transit reported no key type".into()),
    }
    if flag("exportable") != Some(false) {
        return Some("exportable: its material can be read out of Transit, which kms keys never allow".into());
    }
    if flag("allow_plaintext_backup") != Some(false) {
        return Some("allow_plaintext_backup: a plaintext backup of its material can be taken".into());
    }
    if flag("derived") != Some(false) || flag("convergent_encryption") == Some(true) {
        return Some("derived: kms sends no derivation context, so it cannot use the key".into());
    }
    match transit.get("latest_version").and_then(Value::as_u64) {
        Some(v) if v >= 1 && u32::try_from(v).is_ok() => None,
        _ => Some("Transit reported no usable latest_version".into()),
    }
}

/// The record of an adopted key: `Enabled`, origin `kms`, created when Transit made version 1.
fn adopted_record(request: &AdoptKeyRequest, transit: &Value) -> KeyRecord {
    let latest = transit.get("latest_version").and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok()).unwrap_or(1);
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let created = transit
        .get("keys")
        .and_then(|keys| keys.get("1"))
        .and_then(Value::as_i64)
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .unwrap_or(now);
    KeyRecord {
        format: RECORD_FORMAT,
        key_id: request.key_id.clone(),
        key_state: KeyState::Enabled,
        key_usage: KeyUsage::EncryptDecrypt,
        key_spec: KeySpec::Aes256,
        origin: KeyOrigin::Kms,
        description: request.description.clone(),
        tags: request.tags.clone(),
        policy: None,
        creation_date: created,
        deletion_date: None,
        rotation_date: None,
        current_version: latest,
        provisioned: true,
        adopted: true,
        material_fingerprints: Vec::new(),
        valid_to: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kms_like() -> Value {
        json!({
            "type": "aes256-gcm96", "exportable": false, "allow_plaintext_backup": false, "derived": false,
            "latest_version": 3, "keys": {"1": 1_790_000_000, "2": 1_790_000_100, "3": 1_790_000_200}
        })
    }

    #[test]
    fn a_key_with_kms_settings_passes_with_all_its_versions() {
        assert_eq!(refusal(&kms_like()), None);
        let record = adopted_record(&AdoptKeyRequest { key_id: "rustfs".into(), ..Default::default() }, &kms_like());
        assert_eq!(record.current_version, 3);
        assert_eq!(record.creation_date.unix_timestamp(), 1_790_000_000);
        assert!(record.adopted && record.provisioned);
        assert_eq!(record.metadata().key_state, KeyState::Enabled);
    }

    #[test]
    fn each_unsafe_or_unusable_parameter_is_refused_with_its_reason() {
        let cases = [
            ("type", json!("rsa-2048"), "type rsa-2048"),
            ("type", json!("aes128-gcm96"), "type aes128-gcm96"),
            ("exportable", json!(true), "exportable"),
            ("allow_plaintext_backup", json!(true), "allow_plaintext_backup"),
            ("derived", json!(true), "derived"),
            ("convergent_encryption", json!(true), "derived"),
            ("latest_version", json!(0), "Transit reported no usable latest_version"),
        ];
        for (field, value, reason) in cases {
            let mut transit = kms_like();
            transit[field] = value;
            let got = refusal(&transit).unwrap_or_else(|| panic!("{field} passed"));
            assert!(got.starts_with(reason), "{field}: {got}");
        }
        assert!(refusal(&json!({})).is_some());
    }
}
