//! AWS Signature Version 4 verification (`AWS4-HMAC-SHA256` in the `Authorization` header).
//!
//! The server recomputes the signature the client must have made: the canonical request (method,
//! path, sorted query, the signed headers' canonical values, the body's SHA-256), the string to
//! sign (algorithm, `X-Amz-Date`, credential scope, hash of the canonical request) and the
//! HMAC-SHA-256 chain of the secret over date, region, service and `aws4_request`. HMAC and
//! SHA-256 come from `ring`; the header map and the URI from `http` (no HTTP parsing here).
//!
//! What is checked, each with its AWS error name ([`SigV4Error::aws_type`]):
//! - the header is present and well formed (`MissingAuthenticationToken`,
//!   `IncompleteSignatureException`); `host` and `x-amz-date` are among the signed headers and
//!   every signed header is present;
//! - the scope's service is `kms` and its region the server's (`InvalidSignatureException`);
//! - the scope's date is the date of `X-Amz-Date`, which is within 5 minutes of the server's
//!   clock (`InvalidSignatureException`, "Signature expired" / "not yet current");
//! - the access key is known (`UnrecognizedClientException`);
//! - the signature matches, compared in constant time (`InvalidSignatureException`).

use std::borrow::Cow;
use std::fmt::Write as _;

use http::HeaderMap;
use kms_crypto::mac::hmac_sha256;
use ring::digest;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use time::macros::format_description;

/// The only signing algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The largest accepted difference between `X-Amz-Date` and the server's clock.
pub const MAX_SKEW: time::Duration = time::Duration::minutes(5);

/// Why a request's signature was refused. The `Display` text is safe to send back: it never
/// holds the secret or the expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigV4Error {
    /// No `Authorization` header at all.
    #[error("the request is not signed: an Authorization header (AWS4-HMAC-SHA256) is required")]
    Missing,
    /// The header or the date is malformed, or a required part is missing.
    #[error("{0}")]
    Incomplete(String),
    /// The access key id is not configured.
    #[error("the security token included in the request is invalid")]
    UnknownAccessKey,
    /// The request was signed too long ago or too far in the future.
    #[error("{0}")]
    Skewed(String),
    /// The scope names another service or region.
    #[error("{0}")]
    WrongScope(String),
    /// The signature does not match.
    #[error(
        "the request signature we calculated does not match the signature you provided; check your AWS secret \
         access key and signing method"
    )]
    Mismatch,
}

impl SigV4Error {
    /// The AWS error name (`__type`) clients map this to.
    pub fn aws_type(&self) -> &'static str {
        match self {
            Self::Missing => "MissingAuthenticationTokenException",
            Self::Incomplete(_) => "IncompleteSignatureException",
            Self::UnknownAccessKey => "UnrecognizedClientException",
            Self::Skewed(_) | Self::WrongScope(_) | Self::Mismatch => "InvalidSignatureException",
        }
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The access key id.
    pub access_key_id: String,
    /// `YYYYMMDD` of the scope.
    pub date: String,
    /// The scope's region.
    pub region: String,
    /// The scope's service.
    pub service: String,
    /// Lower-case signed header names, in the order given.
    pub signed_headers: Vec<String>,
    /// The presented signature (hex).
    pub signature: String,
}

impl Authorization {
    /// Parses the header value.
    pub fn parse(value: &str) -> Result<Self, SigV4Error> {
        let incomplete = |what: &str| SigV4Error::Incomplete(format!("Authorization header: {what}"));
        let rest = value
            .strip_prefix(ALGORITHM)
            .filter(|r| r.starts_with(' '))
            .ok_or_else(|| incomplete("the algorithm must be AWS4-HMAC-SHA256"))?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (name, v) = part.trim().split_once('=').ok_or_else(|| incomplete("a part is not name=value"))?;
            let slot = match name {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => return Err(incomplete("unknown part")),
            };
            if slot.replace(v).is_some() {
                return Err(incomplete("a part is repeated"));
            }
        }
        let credential = credential.ok_or_else(|| incomplete("Credential is missing"))?;
        let signed = signed.ok_or_else(|| incomplete("SignedHeaders is missing"))?;
        let signature = signature.ok_or_else(|| incomplete("Signature is missing"))?;
        let mut scope = credential.split('/');
        let (Some(access_key_id), Some(date), Some(region), Some(service), Some(terminator), None) =
            (scope.next(), scope.next(), scope.next(), scope.next(), scope.next(), scope.next())
        else {
            return Err(incomplete("Credential must be <key>/<date>/<region>/<service>/aws4_request"));
        };
        if terminator != "aws4_request" || access_key_id.is_empty() || date.len() != 8 || region.is_empty() {
            return Err(incomplete("Credential must be <key>/<date>/<region>/<service>/aws4_request"));
        }
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(incomplete("Signature must be 64 hexadecimal digits"));
        }
        let signed_headers: Vec<String> = signed.split(';').map(str::to_owned).collect();
        if signed_headers.iter().any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase())) {
            return Err(incomplete("SignedHeaders must be lower-case names separated by ;"));
        }
        Ok(Self {
            access_key_id: access_key_id.to_owned(),
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            signed_headers,
            signature: signature.to_ascii_lowercase(),
        })
    }
}

/// What the verifier needs from a request: method, path, query, headers and the body.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// `POST`.
    pub method: &'a str,
    /// The path as received (`/`).
    pub path: &'a str,
    /// The raw query string, if any.
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The body bytes.
    pub body: &'a [u8],
}

/// What the server expects of a scope.
#[derive(Debug, Clone, Copy)]
pub struct Expectation<'a> {
    /// The service name (`kms`).
    pub service: &'a str,
    /// The server's region.
    pub region: &'a str,
    /// The server's clock.
    pub now: OffsetDateTime,
}

/// Checks everything but the secret: the header's form, the scope and the clock. Returns the
/// parsed header; the caller looks up the secret of `access_key_id` and calls [`verify`].
pub fn precheck(request: &SignedRequest<'_>, expect: &Expectation<'_>) -> Result<Authorization, SigV4Error> {
    let value = request.headers.get(http::header::AUTHORIZATION).ok_or(SigV4Error::Missing)?;
    let value = value.to_str().map_err(|_| SigV4Error::Incomplete("Authorization header: not ASCII".into()))?;
    let auth = Authorization::parse(value)?;
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(SigV4Error::Incomplete(format!("the signed headers must include {required}")));
        }
    }
    if let Some(missing) = auth.signed_headers.iter().find(|h| !request.headers.contains_key(h.as_str())) {
        return Err(SigV4Error::Incomplete(format!("the signed header {missing} is not in the request")));
    }
    if auth.service != expect.service {
        return Err(SigV4Error::WrongScope(format!(
            "credential should be scoped to a valid service: '{}' is not '{}'",
            auth.service, expect.service
        )));
    }
    if auth.region != expect.region {
        return Err(SigV4Error::WrongScope(format!(
            "credential should be scoped to a valid region: '{}' is not '{}'",
            auth.region, expect.region
        )));
    }
    let amz_date = header_str(request.headers, "x-amz-date")
        .ok_or_else(|| SigV4Error::Incomplete("X-Amz-Date must be ASCII".into()))?;
    let signed_at = parse_amz_date(amz_date)?;
    if !amz_date.starts_with(&auth.date) {
        return Err(SigV4Error::WrongScope(format!(
            "credential date {} is not the date of X-Amz-Date {amz_date}",
            auth.date
        )));
    }
    if signed_at < expect.now - MAX_SKEW {
        return Err(SigV4Error::Skewed(format!("Signature expired: {amz_date} is more than 5 minutes ago")));
    }
    if signed_at > expect.now + MAX_SKEW {
        return Err(SigV4Error::Skewed(format!("Signature not yet current: {amz_date} is more than 5 minutes ahead")));
    }
    Ok(auth)
}

/// Recomputes the signature with `secret` and compares it in constant time.
pub fn verify(request: &SignedRequest<'_>, auth: &Authorization, secret: &[u8]) -> Result<(), SigV4Error> {
    verify_with_key(request, auth, &signing_key(secret, auth))
}

/// As [`verify`], with the scope's signing key already derived ([`signing_key`]; the server
/// keeps it for the day, see `signing_keys.rs`).
pub fn verify_with_key(request: &SignedRequest<'_>, auth: &Authorization, key: &SigningKey) -> Result<(), SigV4Error> {
    let amz_date = header_str(request.headers, "x-amz-date").unwrap_or_default();
    let expected = signature_with_key(request, auth, amz_date, key);
    if bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) { Ok(()) } else { Err(SigV4Error::Mismatch) }
}

/// The signing key of a scope: HMAC-SHA-256 of the secret over date, region, service and
/// `aws4_request`. Zeroized on drop.
pub type SigningKey = zeroize::Zeroizing<[u8; 32]>;

/// Derives the signing key of `auth`'s scope (date, region, service) from `secret`.
pub fn signing_key(secret: &[u8], auth: &Authorization) -> SigningKey {
    derive_signing_key(secret, &auth.date, &auth.region, &auth.service)
}

fn derive_signing_key(secret: &[u8], date: &str, region: &str, service: &str) -> SigningKey {
    let mut key = zeroize::Zeroizing::new(b"AWS4".to_vec());
    key.extend_from_slice(secret);
    let mut k = hmac_sha256(&key, date.as_bytes());
    for part in [region, service, "aws4_request"] {
        k = hmac_sha256(k.as_ref(), part.as_bytes());
    }
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    out.copy_from_slice(k.as_ref());
    out
}

/// The hex signature of `request` under `secret` for the scope in `auth` (also what a client
/// computes: the bench and the tests sign with it).
pub fn signature(request: &SignedRequest<'_>, auth: &Authorization, amz_date: &str, secret: &[u8]) -> String {
    signature_with_key(request, auth, amz_date, &signing_key(secret, auth))
}

fn signature_with_key(request: &SignedRequest<'_>, auth: &Authorization, amz_date: &str, key: &SigningKey) -> String {
    let canonical = canonical_request(request, &auth.signed_headers);
    // `ALGORITHM \n date \n date/region/service/aws4_request \n hex(SHA-256(canonical))`,
    // written into one buffer: every request is signed by the client and verified here.
    let mut string_to_sign = String::with_capacity(ALGORITHM.len() + amz_date.len() + 64 + 96);
    for part in [ALGORITHM, "\n", amz_date, "\n", &auth.date, "/", &auth.region, "/", &auth.service, "/aws4_request\n"]
    {
        string_to_sign.push_str(part);
    }
    push_hex(&mut string_to_sign, sha256(canonical.as_bytes()).as_ref());
    hex(hmac_sha256(key.as_ref(), string_to_sign.as_bytes()).as_ref())
}

/// A client-side signer (used by the bench and the tests; a real client has its own).
#[derive(Clone, Copy)]
pub struct Signer<'a> {
    /// The access key id.
    pub access_key_id: &'a str,
    /// The secret access key.
    pub secret: &'a [u8],
    /// The region to sign for.
    pub region: &'a str,
    /// The service to sign for (`kms`).
    pub service: &'a str,
}

impl std::fmt::Debug for Signer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

impl Signer<'_> {
    /// Adds `x-amz-date` for `at` and the `Authorization` header, signing every header present
    /// (`host` must be among them).
    pub fn sign(&self, method: &str, path: &str, headers: &mut HeaderMap, body: &[u8], at: OffsetDateTime) {
        let key = self.signing_key(&format_amz_date(at)[..8]);
        self.sign_with_key(method, path, headers, body, at, &key);
    }

    /// The signing key of day `date` (`YYYYMMDD`, UTC) for this signer's region and service.
    /// The SDKs derive it once a day and keep it; so does the bench, whose own signing would
    /// otherwise weigh on the server it measures.
    pub fn signing_key(&self, date: &str) -> SigningKey {
        derive_signing_key(self.secret, date, self.region, self.service)
    }

    /// As [`sign`](Self::sign), with `key` the [`signing_key`](Self::signing_key) of `at`'s
    /// day (a key of another day makes a signature the server refuses).
    pub fn sign_with_key(
        &self,
        method: &str,
        path: &str,
        headers: &mut HeaderMap,
        body: &[u8],
        at: OffsetDateTime,
        key: &SigningKey,
    ) {
        let amz_date = format_amz_date(at);
        headers.insert("x-amz-date", http::HeaderValue::from_str(&amz_date).expect("a date is ASCII"));
        headers.remove(http::header::AUTHORIZATION);
        let mut signed_headers: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
        signed_headers.sort();
        signed_headers.dedup();
        let auth = Authorization {
            access_key_id: self.access_key_id.to_owned(),
            date: amz_date[..8].to_owned(),
            region: self.region.to_owned(),
            service: self.service.to_owned(),
            signed_headers,
            signature: String::new(),
        };
        let request = SignedRequest { method, path, query: None, headers, body };
        let signature = signature_with_key(&request, &auth, &amz_date, key);
        let value = format!(
            "{ALGORITHM} Credential={}/{}/{}/{}/aws4_request, SignedHeaders={}, Signature={signature}",
            self.access_key_id,
            auth.date,
            self.region,
            self.service,
            auth.signed_headers.join(";")
        );
        headers.insert(http::header::AUTHORIZATION, http::HeaderValue::from_str(&value).expect("the header is ASCII"));
    }
}

/// The canonical request of SigV4 (non-S3 rules: the path is normalized and encoded once more).
/// Written into one buffer, header values as they are when they are already canonical (nearly
/// always): it is built for every request on both sides.
pub fn canonical_request(request: &SignedRequest<'_>, signed_headers: &[String]) -> String {
    let mut out = String::with_capacity(512);
    out.push_str(request.method);
    out.push('\n');
    if request.path == "/" {
        out.push('/');
    } else {
        out.push_str(&canonical_uri(request.path));
    }
    out.push('\n');
    if let Some(query) = request.query.filter(|q| !q.is_empty()) {
        out.push_str(&canonical_query(query));
    }
    out.push('\n');
    for name in signed_headers {
        out.push_str(name);
        out.push(':');
        for (i, value) in request.headers.get_all(name.as_str()).iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&collapse_spaces(&String::from_utf8_lossy(value.as_bytes())));
        }
        out.push('\n');
    }
    out.push('\n');
    for (i, name) in signed_headers.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(name);
    }
    out.push('\n');
    push_hex(&mut out, sha256(request.body).as_ref());
    out
}

fn canonical_uri(path: &str) -> String {
    // Remove `.` and `..` segments and empty ones (keeping a trailing slash), then encode each
    // segment as the clients do: the path as sent, encoded once more.
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::from("/");
    out.push_str(&segments.iter().map(|s| uri_encode(s.as_bytes(), true)).collect::<Vec<_>>().join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    out
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (uri_encode(k.as_bytes(), true), uri_encode(v.as_bytes(), true)))
        .collect();
    // `form_urlencoded` reads `+` as a space; SigV4 clients send spaces as %20, so a `+` in a
    // query is a literal plus only for broken clients. Sorting is by encoded name, then value.
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// RFC 3986 encoding of SigV4: unreserved characters stay, everything else is `%XX`.
fn uri_encode(bytes: &[u8], encode_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (b == b'/' && !encode_slash) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A header value as SigV4 signs it: trimmed, runs of spaces collapsed to one. Values that
/// are already so (nearly all) are borrowed as they are.
fn collapse_spaces(value: &str) -> Cow<'_, str> {
    let canonical = !value.starts_with(char::is_whitespace)
        && !value.ends_with(char::is_whitespace)
        && !value.contains("  ")
        && !value.contains(|c: char| c.is_whitespace() && c != ' ');
    if canonical { Cow::Borrowed(value) } else { Cow::Owned(value.split_whitespace().collect::<Vec<_>>().join(" ")) }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok()
}

/// Parses `YYYYMMDDTHHMMSSZ`: fixed-width digits read directly (every request carries one;
/// `time`'s format-description parser was a visible frame of the AWS path), the calendar
/// checked by `time`'s constructors.
pub fn parse_amz_date(value: &str) -> Result<OffsetDateTime, SigV4Error> {
    let malformed = || SigV4Error::Incomplete(format!("X-Amz-Date {value:?} must be YYYYMMDDTHHMMSSZ"));
    let b = value.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return Err(malformed());
    }
    let number = |range: std::ops::Range<usize>| -> Result<u16, SigV4Error> {
        b[range].iter().try_fold(0u16, |n, &d| {
            if d.is_ascii_digit() { Ok(n * 10 + u16::from(d - b'0')) } else { Err(malformed()) }
        })
    };
    let small = |range| number(range).and_then(|n| u8::try_from(n).map_err(|_| malformed()));
    let month = time::Month::try_from(small(4..6)?).map_err(|_| malformed())?;
    let date =
        time::Date::from_calendar_date(i32::from(number(0..4)?), month, small(6..8)?).map_err(|_| malformed())?;
    let at = time::Time::from_hms(small(9..11)?, small(11..13)?, small(13..15)?).map_err(|_| malformed())?;
    Ok(time::PrimitiveDateTime::new(date, at).assume_utc())
}

/// Formats a time as `X-Amz-Date` wants it.
pub fn format_amz_date(t: OffsetDateTime) -> String {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    t.to_offset(time::UtcOffset::UTC).format(&format).expect("a UTC time formats")
}

fn sha256(bytes: &[u8]) -> digest::Digest {
    digest::digest(&digest::SHA256, bytes)
}

pub(crate) use crate::hex::{hex, push_hex};

#[cfg(test)]
#[path = "sigv4_tests.rs"]
mod tests;
