use http::{HeaderMap, HeaderValue};

use super::*;

const SUITE_KEY: &str = "AKIDEXAMPLE";
const SUITE_SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const KMS_SECRET: &[u8] = b"kmsTestSecret/Key+0123456789abcdefghijklmn";

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

fn suite_auth(signature: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={SUITE_KEY}/20150830/us-east-1/service/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature={signature}"
    )
}

/// Known answers of the published SigV4 test suite (`get-vanilla`, `post-vanilla`,
/// `get-vanilla-query-order-key-case`), which botocore 1.43 reproduces too.
#[test]
fn the_published_test_suite_vectors_verify() {
    let cases = [
        ("GET", None, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        ("POST", None, "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
        (
            "GET",
            Some("Param2=value2&Param1=value1"),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
    ];
    for (method, query, signature) in cases {
        let auth_value = suite_auth(signature);
        let map = headers(&[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            ("authorization", &auth_value),
        ]);
        let request = SignedRequest { method, path: "/", query, headers: &map, body: b"" };
        let expect =
            Expectation { service: "service", region: "us-east-1", now: parse_amz_date("20150830T123600Z").unwrap() };
        let auth = precheck(&request, &expect).unwrap();
        verify(&request, &auth, SUITE_SECRET).unwrap_or_else(|e| panic!("{method} {query:?}: {e}"));
        assert_eq!(verify(&request, &auth, b"another secret"), Err(SigV4Error::Mismatch));
    }
}

/// A KMS request signed by botocore 1.43.11 (`SigV4Auth`, clock fixed at 2026-12-02 12:42:00).
fn botocore_kms_request() -> HeaderMap {
    headers(&[
        ("host", "127.0.0.1:7373"),
        ("x-amz-target", "TrentService.ListKeys"),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-date", "20261202T124200Z"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDTEST/20261202/us-east-1/kms/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
             Signature=c20b777e05fa68cac97b437074787219af2c06e6a928c2177a6288518bea9bca",
        ),
    ])
}

const BOTOCORE_BODY: &[u8] = br#"{"Limit": 10}"#;

fn kms_expect(minutes_later: i64) -> Expectation<'static> {
    Expectation {
        service: "kms",
        region: "us-east-1",
        now: parse_amz_date("20261202T124200Z").unwrap() + time::Duration::minutes(minutes_later),
    }
}

#[test]
fn a_botocore_signature_verifies_and_any_tampering_fails() {
    let map = botocore_kms_request();
    let request = SignedRequest { method: "POST", path: "/", query: None, headers: &map, body: BOTOCORE_BODY };
    let auth = precheck(&request, &kms_expect(0)).unwrap();
    assert_eq!(auth.access_key_id, "AKIDTEST");
    verify(&request, &auth, KMS_SECRET).unwrap();

    // The body.
    let tampered = SignedRequest { body: br#"{"Limit": 11}"#, ..request };
    assert_eq!(verify(&tampered, &auth, KMS_SECRET), Err(SigV4Error::Mismatch));
    // A signed header.
    let mut other = map.clone();
    other.insert("x-amz-target", HeaderValue::from_static("TrentService.ScheduleKeyDeletion"));
    let tampered = SignedRequest { headers: &other, ..request };
    assert_eq!(verify(&tampered, &auth, KMS_SECRET), Err(SigV4Error::Mismatch));
    // The method and the path.
    assert_eq!(verify(&SignedRequest { method: "PUT", ..request }, &auth, KMS_SECRET), Err(SigV4Error::Mismatch));
    assert_eq!(verify(&SignedRequest { path: "/x", ..request }, &auth, KMS_SECRET), Err(SigV4Error::Mismatch));
    // The secret.
    assert_eq!(verify(&request, &auth, b"kmsTestSecret/Key+0123456789abcdefghijklmN"), Err(SigV4Error::Mismatch));
}

#[test]
fn our_own_signer_reproduces_botocore() {
    let map = botocore_kms_request();
    let request = SignedRequest { method: "POST", path: "/", query: None, headers: &map, body: BOTOCORE_BODY };
    let auth = precheck(&request, &kms_expect(0)).unwrap();
    assert_eq!(signature(&request, &auth, "20261202T124200Z", KMS_SECRET), auth.signature);
}

#[test]
fn the_clock_is_checked_five_minutes_either_way() {
    let map = botocore_kms_request();
    let request = SignedRequest { method: "POST", path: "/", query: None, headers: &map, body: BOTOCORE_BODY };
    precheck(&request, &kms_expect(5)).unwrap();
    precheck(&request, &kms_expect(-5)).unwrap();
    let expired = precheck(&request, &kms_expect(6)).unwrap_err();
    assert!(matches!(&expired, SigV4Error::Skewed(m) if m.contains("expired")), "{expired}");
    let future = precheck(&request, &kms_expect(-6)).unwrap_err();
    assert!(matches!(&future, SigV4Error::Skewed(m) if m.contains("not yet current")), "{future}");
    assert_eq!(future.aws_type(), "InvalidSignatureException");
}

#[test]
fn scope_and_header_faults_have_their_aws_names() {
    let map = botocore_kms_request();
    let request = SignedRequest { method: "POST", path: "/", query: None, headers: &map, body: b"{}" };
    let wrong_region = Expectation { region: "eu-west-1", ..kms_expect(0) };
    let err = precheck(&request, &wrong_region).unwrap_err();
    assert!(matches!(err, SigV4Error::WrongScope(_)));
    assert_eq!(err.aws_type(), "InvalidSignatureException");
    let wrong_service = Expectation { service: "s3", ..kms_expect(0) };
    assert!(matches!(precheck(&request, &wrong_service).unwrap_err(), SigV4Error::WrongScope(_)));

    // A signed header that is not in the request.
    let mut missing = map.clone();
    missing.remove("x-amz-target");
    let err = precheck(&SignedRequest { headers: &missing, ..request }, &kms_expect(0)).unwrap_err();
    assert!(matches!(&err, SigV4Error::Incomplete(m) if m.contains("x-amz-target")), "{err}");
    assert_eq!(err.aws_type(), "IncompleteSignatureException");

    // No header at all.
    let mut unsigned = map.clone();
    unsigned.remove("authorization");
    let err = precheck(&SignedRequest { headers: &unsigned, ..request }, &kms_expect(0)).unwrap_err();
    assert_eq!(err, SigV4Error::Missing);
    assert_eq!(err.aws_type(), "MissingAuthenticationTokenException");
}

#[test]
fn malformed_authorization_headers_are_incomplete() {
    for bad in [
        "AWS4-HMAC-SHA1 Credential=A/20261202/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=A/20261202/us-east-1/kms, SignedHeaders=host;x-amz-date, Signature=00",
        "AWS4-HMAC-SHA256 Credential=A/20261202/us-east-1/kms/aws4_request, Signature=00",
        "AWS4-HMAC-SHA256 Credential=A/20261202/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=xyz",
        "AWS4-HMAC-SHA256 Credential=A/20261202/us-east-1/kms/aws4_request, SignedHeaders=Host, Signature=00",
        "AWS4-HMAC-SHA256Credential=A/20261202/us-east-1/kms/aws4_request",
        "Bearer kms_token",
    ] {
        let err = Authorization::parse(bad).unwrap_err();
        assert!(matches!(err, SigV4Error::Incomplete(_)), "{bad}: {err:?}");
    }
}

#[test]
fn a_signature_that_omits_host_or_date_is_refused() {
    let map = headers(&[
        ("host", "127.0.0.1:7373"),
        ("x-amz-date", "20261202T124200Z"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDTEST/20261202/us-east-1/kms/aws4_request, SignedHeaders=x-amz-date, \
             Signature=c20b777e05fa68cac97b437074787219af2c06e6a928c2177a6288518bea9bca",
        ),
    ]);
    let request = SignedRequest { method: "POST", path: "/", query: None, headers: &map, body: b"" };
    let err = precheck(&request, &kms_expect(0)).unwrap_err();
    assert!(matches!(&err, SigV4Error::Incomplete(m) if m.contains("host")), "{err}");
}

#[test]
fn canonical_paths_and_queries_follow_the_suite_rules() {
    assert_eq!(canonical_uri("/"), "/");
    assert_eq!(canonical_uri("/a/./b/../c/"), "/a/c/");
    assert_eq!(canonical_uri("/a b"), "/a%20b");
    assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
    assert_eq!(canonical_query("k=%2Fv"), "k=%2Fv");
}

#[test]
fn the_client_signer_makes_what_the_verifier_accepts() {
    let signer = Signer { access_key_id: "AKIDTEST", secret: KMS_SECRET, region: "us-east-1", service: "kms" };
    let mut map = headers(&[
        ("host", "127.0.0.1:7373"),
        ("x-amz-target", "TrentService.ListKeys"),
        ("content-type", "application/x-amz-json-1.1"),
    ]);
    let at = parse_amz_date("20261202T124200Z").unwrap();
    signer.sign("POST", "/", &mut map, BOTOCORE_BODY, at);
    // Same headers, same body, same clock: botocore's signature exactly.
    assert_eq!(map, botocore_kms_request());
    assert!(!format!("{signer:?}").contains("kmsTestSecret"));
}

#[test]
fn a_kept_signing_key_signs_as_a_fresh_one_and_only_for_its_day() {
    let signer = Signer { access_key_id: "AKIDTEST", secret: KMS_SECRET, region: "us-east-1", service: "kms" };
    let fresh = || {
        headers(&[
            ("host", "127.0.0.1:7373"),
            ("x-amz-target", "TrentService.ListKeys"),
            ("content-type", "application/x-amz-json-1.1"),
        ])
    };
    let at = parse_amz_date("20261202T124200Z").unwrap();
    let mut kept = fresh();
    signer.sign_with_key("POST", "/", &mut kept, BOTOCORE_BODY, at, &signer.signing_key("20261202"));
    assert_eq!(kept, botocore_kms_request());
    let request = SignedRequest { method: "POST", path: "/", query: None, headers: &kept, body: BOTOCORE_BODY };
    let auth = precheck(&request, &kms_expect(0)).unwrap();
    assert_eq!(*signer.signing_key("20261202"), *signing_key(KMS_SECRET, &auth));
    // Yesterday's key signs a request the verifier refuses.
    let mut stale = fresh();
    signer.sign_with_key("POST", "/", &mut stale, BOTOCORE_BODY, at, &signer.signing_key("20261201"));
    let request = SignedRequest { headers: &stale, ..request };
    let auth = precheck(&request, &kms_expect(0)).unwrap();
    assert_eq!(verify(&request, &auth, KMS_SECRET), Err(SigV4Error::Mismatch));
}

#[test]
fn amz_dates_are_read_exactly_and_anything_else_is_incomplete() {
    let at = parse_amz_date("20240229T235960Z");
    assert!(matches!(at, Err(SigV4Error::Incomplete(_))), "second 60: {at:?}");
    let at = parse_amz_date("20240229T235959Z").unwrap();
    assert_eq!((at.year(), u8::from(at.month()), at.day()), (2024, 2, 29));
    assert_eq!((at.hour(), at.minute(), at.second()), (23, 59, 59));
    assert_eq!(format_amz_date(at), "20240229T235959Z");
    for bad in [
        "",
        "20261202T124200",
        "20261202T124200Z0",
        "20261202 124200Z",
        "2026120aT124200Z",
        "20261302T124200Z",
        "20230229T124200Z",
        "20261202T244200Z",
        "+2026120T124200Z",
        "２0261202T12420Z",
    ] {
        assert!(matches!(parse_amz_date(bad), Err(SigV4Error::Incomplete(_))), "{bad:?} was accepted");
    }
}

#[test]
fn header_values_are_trimmed_and_their_spaces_collapsed() {
    for (value, canonical) in [
        ("application/x-amz-json-1.1", "application/x-amz-json-1.1"),
        ("a b", "a b"),
        ("  a   b  ", "a b"),
        ("a\tb", "a b"),
        ("a \t b", "a b"),
        ("", ""),
    ] {
        assert_eq!(collapse_spaces(value), canonical, "{value:?}");
    }
}
