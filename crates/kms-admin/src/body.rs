//! What a native request brings besides its route: the JSON body (bounded, parsed with
//! errors naming the field, then cleared), the configure body, and the query strings.

use http::Request;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use kms_types::api_types::{ConfigureBody, ConfigureKmsRequest};
use kms_types::types::{ListKeysRequest, validate_key_id, validate_list_limit, validate_pending_window};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::app::App;
use crate::error::ApiError;
use crate::json_body::{parse_json, strip_position};

impl App {
    /// Reads and parses a JSON body. `required = false` treats an empty body as `{}`.
    pub(crate) async fn body<T: DeserializeOwned + Serialize>(
        &self,
        req: Request<Incoming>,
        required: bool,
    ) -> Result<T, ApiError> {
        let (parts, body) = req.into_parts();
        let limit = self.max_body_bytes;
        let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(len) = declared.filter(|len| *len > limit as u64) {
            drain_oversized(body, len).await;
            return Err(ApiError::body_too_large(limit));
        }
        let bytes = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    ApiError::body_too_large(limit)
                } else {
                    ApiError::invalid("body", "could not be read")
                }
            })?
            .to_bytes();
        if bytes.is_empty() {
            if required {
                return Err(ApiError::invalid("body", "must not be empty"));
            }
            return parse_json(b"{}");
        }
        let is_json = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
            let mime = ct.split(';').next().unwrap_or("").trim();
            mime.eq_ignore_ascii_case("application/json")
        });
        if !is_json {
            return Err(ApiError::not_json());
        }
        let parsed = parse_json(&bytes);
        // Best effort: clear the request buffer (it may hold plaintext) when we own it alone.
        if let Ok(mut owned) = bytes.try_into_mut() {
            zeroize::Zeroize::zeroize(&mut owned[..]);
        }
        parsed
    }
}

/// The most of an oversized body that is read and thrown away before its 413 is sent.
const OVERSIZE_DRAIN_BYTES: u64 = 8 << 20;

/// Reads and discards a body refused for its declared length `declared`, when it is at most
/// [`OVERSIZE_DRAIN_BYTES`]: a client that writes its whole request before it reads the answer
/// (hyper's client, most SDKs) then gets the 413 instead of a broken pipe, as the server would
/// otherwise close the connection mid-upload. A larger body is not read; its connection is closed.
pub(crate) async fn drain_oversized(mut body: Incoming, declared: u64) {
    if declared > OVERSIZE_DRAIN_BYTES {
        return;
    }
    let mut left = declared;
    while left > 0 {
        match body.frame().await {
            Some(Ok(frame)) => left = left.saturating_sub(frame.data_ref().map_or(0, |d| d.len() as u64)),
            _ => break,
        }
    }
}

/// A configure body: a `ConfigureKmsRequest` plus the options it has no field for (`tls`,
/// `cache_coherence_seconds`, see [`ConfigureBody`]), each part parsed with errors that name
/// the field.
pub(crate) fn configure_body(mut body: serde_json::Map<String, serde_json::Value>) -> Result<ConfigureBody, ApiError> {
    let tls = body.remove("tls").filter(|v| !v.is_null());
    let coherence = body.remove("cache_coherence_seconds").filter(|v| !v.is_null());
    let to_bytes = |v: &serde_json::Value| serde_json::to_vec(v).unwrap_or_default();
    let request: ConfigureKmsRequest = parse_json(&to_bytes(&serde_json::Value::Object(body)))?;
    let mut parsed = ConfigureBody::from(request);
    if let Some(tls) = tls {
        parsed.tls =
            Some(serde_json::from_value(tls).map_err(|e| ApiError::invalid("tls", strip_position(&e.to_string())))?);
    }
    if let Some(seconds) = coherence {
        let seconds =
            seconds.as_u64().ok_or_else(|| ApiError::invalid("cache_coherence_seconds", "must be a whole number"))?;
        parsed.cache_coherence_seconds = Some(seconds);
    }
    Ok(parsed)
}

pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect()
}

pub(crate) fn list_query(query: Option<&str>) -> Result<ListKeysRequest, ApiError> {
    let mut request = ListKeysRequest::default();
    for (name, value) in query_pairs(query) {
        match name.as_str() {
            "limit" => {
                let n = value.parse::<u32>().map_err(|_| ApiError::invalid("limit", "must be a whole number"))?;
                request.limit = Some(n);
            }
            "marker" => {
                validate_key_id("marker", &value)?;
                request.marker = Some(value);
            }
            "prefix" => {
                request.prefix = Some(value);
                request.checked_prefix()?;
            }
            other => return Err(ApiError::invalid(other.to_owned(), "unknown query parameter")),
        }
    }
    validate_list_limit(request.limit)?;
    Ok(request)
}

pub(crate) fn deletion_query(query: Option<&str>) -> Result<u32, ApiError> {
    let mut days = None;
    for (name, value) in query_pairs(query) {
        match name.as_str() {
            "pending_window_in_days" => {
                days = Some(
                    value
                        .parse::<u32>()
                        .map_err(|_| ApiError::invalid("pending_window_in_days", "must be a whole number of days"))?,
                );
            }
            other => return Err(ApiError::invalid(other.to_owned(), "unknown query parameter")),
        }
    }
    Ok(validate_pending_window(days)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_checked() {
        assert_eq!(list_query(Some("limit=5&marker=k1")).unwrap().limit, Some(5));
        assert_eq!(list_query(Some("limit=0")).unwrap_err().field.as_deref(), Some("limit"));
        assert_eq!(list_query(Some("limit=x")).unwrap_err().field.as_deref(), Some("limit"));
        assert_eq!(list_query(Some("marker=a/b")).unwrap_err().field.as_deref(), Some("marker"));
        assert_eq!(list_query(Some("color=red")).unwrap_err().field.as_deref(), Some("color"));
        assert_eq!(deletion_query(None).unwrap(), 30);
        assert_eq!(deletion_query(Some("pending_window_in_days=7")).unwrap(), 7);
        for bad in ["pending_window_in_days=6", "pending_window_in_days=31", "pending_window_in_days=-1"] {
            assert_eq!(deletion_query(Some(bad)).unwrap_err().field.as_deref(), Some("pending_window_in_days"));
        }
    }
}
