//! Transit calls for keys we hold a record of: routing (spread, or the active node for a
//! key's first use), the crypto calls, and a rotation that is never applied twice.

use super::*;

impl Inner {
    /// Where Transit calls for `record`'s key go: spread over the nodes, except for a key
    /// created or rotated within [`FRESH_WINDOW`] or a ciphertext of a version newer than the
    /// record (standbys may not have it yet), which go to the active node. Imported keys
    /// (origin `external`) always go to the active node: their Transit key is made at import
    /// time, which no record date tells.
    pub(super) fn transit_route(record: &KeyRecord, version: Option<u32>) -> Route {
        if record.origin == KeyOrigin::External {
            return Route::Active;
        }
        let changed = record.rotation_date.unwrap_or(record.creation_date).max(record.creation_date);
        let recent = OffsetDateTime::now_utc() - changed < FRESH_WINDOW;
        if recent || version.is_some_and(|v| v > record.current_version) { Route::Active } else { Route::Spread }
    }

    pub(super) async fn transit_encrypt(
        &self,
        record: &KeyRecord,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<VaultBlob> {
        let key_id = record.key_id.as_str();
        let path = format!("{}/encrypt/{key_id}", self.transit);
        let plaintext_b64 = Zeroizing::new(B64.encode(plaintext));
        let body = Zeroizing::new(
            serde_json::to_vec(
                &json!({ "plaintext": plaintext_b64.as_str(), "associated_data": associated_data(context) }),
            )
            .map_err(|e| KmsError::backend(format!("cannot encode the request: {e}")))?,
        );
        let reply = self
            .call(Self::transit_route(record, None), Method::Post, &path, Some(body.to_vec()))
            .await
            .map_err(|e| self.map_key_error(key_id, e, "encrypt"))?;
        let ciphertext = reply
            .as_ref()
            .and_then(|v| v.get("data")?.get("ciphertext")?.as_str())
            .ok_or_else(|| KmsError::backend("vault: encrypt reply without ciphertext"))?;
        VaultBlob::new(key_id, ciphertext.to_owned())
    }

    pub(super) async fn transit_decrypt(
        &self,
        record: &KeyRecord,
        blob: &VaultBlob,
        context: Option<&EncryptionContext>,
    ) -> Result<SecretBytes> {
        let path = format!("{}/decrypt/{}", self.transit, blob.key_id);
        // kms's ciphertexts always carry the canonical context (empty included); `None` only
        // for a RustFS envelope, which RustFS sealed without associated data.
        let body = match context {
            Some(context) => {
                json!({ "ciphertext": blob.transit_ciphertext, "associated_data": associated_data(context) })
            }
            None => json!({ "ciphertext": blob.transit_ciphertext }),
        };
        let body =
            serde_json::to_vec(&body).map_err(|e| KmsError::backend(format!("cannot encode the request: {e}")))?;
        let route = Self::transit_route(record, Some(blob.key_version));
        match self.call(route, Method::Post, &path, Some(body)).await {
            Ok(mut reply) => {
                let plaintext = reply
                    .as_mut()
                    .and_then(|v| v.get_mut("data")?.get_mut("plaintext").map(Value::take))
                    .and_then(|v| match v {
                        Value::String(s) => Some(Zeroizing::new(s)),
                        _ => None,
                    })
                    .ok_or_else(|| KmsError::backend("vault: decrypt reply without plaintext"))?;
                B64.decode(plaintext.as_bytes())
                    .map(SecretBytes::new)
                    .map_err(|_| KmsError::backend("vault: bad plaintext"))
            }
            // A ciphertext that does not authenticate, or that Transit cannot parse or does
            // not have the version of: opaque, never retried.
            Err(e) if e.is_auth_failure() || e.status() == Some(400) && !e.says("encryption key not found") => {
                Err(KmsError::crypto_with_source(e))
            }
            Err(e) => Err(self.map_key_error(&blob.key_id, e, "decrypt")),
        }
    }

    pub(super) async fn transit_datakey(
        &self,
        record: &KeyRecord,
        spec: KeySpec,
        context: &EncryptionContext,
        with_plaintext: bool,
    ) -> Result<(VaultBlob, Option<SecretBytes>)> {
        let key_id = record.key_id.as_str();
        let kind = if with_plaintext { "plaintext" } else { "wrapped" };
        let path = format!("{}/datakey/{kind}/{key_id}", self.transit);
        let body = serde_json::to_vec(&json!({ "bits": bits(spec), "associated_data": associated_data(context) }))
            .map_err(|e| KmsError::backend(format!("cannot encode the request: {e}")))?;
        let reply = self
            .call(Self::transit_route(record, None), Method::Post, &path, Some(body))
            .await
            .map_err(|e| self.map_key_error(key_id, e, "generate data key"))?;
        let data = reply.and_then(|mut v| v.get_mut("data").map(Value::take)).unwrap_or(Value::Null);
        let reply: DataKeyReply =
            serde_json::from_value(data).map_err(|e| KmsError::backend(format!("vault: bad datakey reply: {e}")))?;
        let blob = VaultBlob::new(key_id, reply.ciphertext)?;
        let plaintext = match (with_plaintext, reply.plaintext) {
            (true, Some(p)) => Some(SecretBytes::new(
                B64.decode(p.expose_secret()).map_err(|_| KmsError::backend("vault: bad datakey plaintext"))?,
            )),
            (true, None) => return Err(KmsError::backend("vault: datakey reply without plaintext")),
            (false, _) => None,
        };
        if let Some(p) = &plaintext
            && p.len() != spec.key_len()
        {
            return Err(KmsError::backend("vault: datakey of the wrong length"));
        }
        Ok((blob, plaintext))
    }

    /// Maps a Transit error for a key we hold a record of.
    pub(super) fn map_key_error(&self, key_id: &str, e: CallError, what: &str) -> KmsError {
        if e.says("encryption key not found") || e.status() == Some(404) {
            // Our record says the key exists but Transit has no such key: the Transit key
            // was deleted behind our back. Report it, do not recreate it.
            self.cache_drop(key_id);
            return KmsError::backend_with_source(
                format!("vault: the Transit key for {key_id} is missing ({what})"),
                false,
                e,
            );
        }
        e.into_kms(what)
    }

    /// Rotates a key, safe to call again after a lost reply: when Transit already holds a
    /// version newer than the record (a rotate whose reply was lost, or one another server
    /// is recording right now), that version is recorded instead of rotating a second time.
    pub(super) async fn rotate(&self, key_id: &str) -> Result<KeyMetadataResponse> {
        let record = self.load_fresh(key_id).await?.allowing(key_id, Operation::RotateKey)?;
        if !record.material_fingerprints.is_empty() {
            // Transit refuses to rotate an imported key made without allow_rotation, and a
            // key whose material comes from outside must not get material Transit generated.
            return Err(KmsError::Unsupported {
                operation: "rotate_key of a key with imported material (import a new version instead)",
                backend: "vault",
            });
        }
        let mut latest = self.transit_latest_version(key_id).await?;
        if latest <= record.current_version {
            let path = format!("{}/keys/{key_id}/rotate", self.transit);
            match self.call(Route::Active, Method::Post, &path, None).await {
                Ok(_) => {}
                Err(e) if e.is_lost() && self.transit_latest_version(key_id).await.is_ok_and(|now| now > latest) => {}
                Err(e) => return Err(self.map_key_error(key_id, e, "rotate")),
            }
            latest = self.transit_latest_version(key_id).await?;
        }
        let record = self
            .update(key_id, Operation::RotateKey.as_str(), |r| {
                if r.current_version < latest {
                    r.current_version = latest;
                    r.rotation_date = Some(OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(r.creation_date));
                }
                Ok(())
            })
            .await?;
        Ok(KeyMetadataResponse { key_metadata: record.metadata() })
    }

    pub(super) async fn transit_latest_version(&self, key_id: &str) -> Result<u32> {
        let path = format!("{}/keys/{key_id}", self.transit);
        let reply = self
            .call(Route::Active, Method::Get, &path, None)
            .await
            .map_err(|e| self.map_key_error(key_id, e, "read the Transit key"))?;
        reply
            .as_ref()
            .and_then(|v| v.get("data")?.get("latest_version")?.as_u64())
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| KmsError::backend("vault: Transit key without latest_version"))
    }
}
