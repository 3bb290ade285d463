//! The AWS KMS protocol end to end over a real listener: requests signed with SigV4 by the
//! crate's client signer, every served operation, the error names clients map, authorization
//! with the native grants, and a matrix of bad requests (0 successes, 0 × 5xx).

mod common;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kms_admin::aws::settings::{AccessKeyConfig, generate_access_key};
use kms_admin::aws::sigv4::Signer;
use kms_admin::config::ServerConfig;
use kms_admin::store::ConfigStore;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use common::{ADMIN, Http, Options, TestServer, identities, temp_dir};

struct Key {
    id: String,
    secret: Zeroizing<String>,
}

struct Aws {
    client: HyperClient<HttpConnector, Full<Bytes>>,
    host: String,
    key: Key,
}

/// How a request is signed and what is changed after signing.
struct How {
    clock_minutes: i64,
    service: &'static str,
    region: &'static str,
    tamper: Tamper,
}

enum Tamper {
    Nothing,
    Body(Vec<u8>),
    /// Sets (`Some`) or removes (`None`) a header.
    Header(&'static str, Option<&'static str>),
}

impl Default for How {
    fn default() -> Self {
        Self { clock_minutes: 0, service: "kms", region: "us-east-1", tamper: Tamper::Nothing }
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn error(&self) -> &str {
        self.body["__type"].as_str().unwrap_or("")
    }
}

impl Aws {
    async fn call(&self, target: &str, body: Value) -> Answer {
        self.send(target, serde_json::to_vec(&body).unwrap(), &How::default()).await
    }

    async fn ok(&self, target: &str, body: Value) -> Value {
        let answer = self.call(target, body).await;
        assert_eq!(answer.status, StatusCode::OK, "{target}: {}", answer.body);
        answer.body
    }

    /// Signs and sends as `how` says.
    async fn send(&self, target: &str, body: Vec<u8>, how: &How) -> Answer {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_str(&self.host).unwrap());
        headers.insert("x-amz-target", HeaderValue::from_str(&format!("TrentService.{target}")).unwrap());
        headers.insert("content-type", HeaderValue::from_static("application/x-amz-json-1.1"));
        let signer = Signer {
            access_key_id: &self.key.id,
            secret: self.key.secret.as_bytes(),
            region: how.region,
            service: how.service,
        };
        let at = time::OffsetDateTime::now_utc() + time::Duration::minutes(how.clock_minutes);
        signer.sign("POST", "/", &mut headers, &body, at);
        let mut req = Request::builder().method(Method::POST).uri(format!("http://{}/", self.host));
        for (name, value) in &headers {
            req = req.header(name, value);
        }
        let mut req = req.body(Full::new(Bytes::from(body))).unwrap();
        match &how.tamper {
            Tamper::Nothing => {}
            Tamper::Body(other) => *req.body_mut() = Full::new(Bytes::from(other.clone())),
            Tamper::Header(name, Some(value)) => {
                req.headers_mut().insert(*name, HeaderValue::from_static(value));
            }
            Tamper::Header(name, None) => {
                req.headers_mut().remove(*name);
            }
        }
        self.raw(req).await
    }

    async fn raw(&self, req: Request<Full<Bytes>>) -> Answer {
        let resp = self.client.request(req).await.expect("request failed");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {bytes:?}"));
        Answer { status, headers, body }
    }
}

/// A server whose `admin` and `app` identities have access keys.
async fn server(tag: &str) -> (TestServer, Aws, Aws) {
    let dir = temp_dir(&format!("aws-{tag}"));
    let store = ConfigStore::open(&dir, None).unwrap();
    let mut config =
        ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), identities: identities(), ..ServerConfig::default() };
    let mut keys = Vec::new();
    for identity in ["admin", "app"] {
        let (id, secret) = generate_access_key();
        config.aws.access_keys.push(AccessKeyConfig {
            identity: identity.into(),
            access_key_id: id.clone(),
            secret_access_key: store.seal_secret(&secret, &AccessKeyConfig::seal_field(&id)).unwrap(),
        });
        keys.push(Key { id, secret });
    }
    drop(store);
    let server = TestServer::with(Options { config, data_dir: Some(dir), ..Options::default() }).await;
    let client = HyperClient::builder(TokioExecutor::new()).build_http();
    let host = server.addr.to_string();
    let mut keys = keys.into_iter();
    let admin = Aws { client: client.clone(), host: host.clone(), key: keys.next().unwrap() };
    let app = Aws { client, host, key: keys.next().unwrap() };
    (server, admin, app)
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(value: &Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(value.as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn data_plane_operations_round_trip_with_arns() {
    let (server, aws, _) = server("data").await;
    let created =
        aws.ok("CreateKey", json!({"Description": "orders", "Tags": [{"TagKey": "team", "TagValue": "a"}]})).await;
    let meta = &created["KeyMetadata"];
    let id = meta["KeyId"].as_str().unwrap().to_owned();
    let arn = format!("arn:aws:kms:us-east-1:000000000000:key/{id}");
    assert_eq!(meta["Arn"], arn);
    assert_eq!(meta["KeyState"], "Enabled");
    assert!(meta["CreationDate"].is_number());

    let context = json!({"purpose": "test"});
    let enc = aws.ok("Encrypt", json!({"KeyId": arn, "Plaintext": b64(b"hello"), "EncryptionContext": context})).await;
    assert_eq!(enc["KeyId"], arn);
    let dec = aws.ok("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"], "EncryptionContext": context})).await;
    assert_eq!(unb64(&dec["Plaintext"]), b"hello");
    assert_eq!(dec["KeyId"], arn);
    // The bare id and the ARN name the same key.
    aws.ok("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"], "EncryptionContext": context, "KeyId": id}))
        .await;

    // Wrong context: opaque.
    let wrong = aws
        .call("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"], "EncryptionContext": {"purpose": "x"}}))
        .await;
    assert_eq!((wrong.status, wrong.error()), (StatusCode::BAD_REQUEST, "InvalidCiphertextException"));

    // Data keys: KeySpec and NumberOfBytes (the Encryption SDK's way), any length 1..=1024.
    for (request, len) in [
        (json!({"KeyId": id, "KeySpec": "AES_256", "EncryptionContext": context}), 32),
        (json!({"KeyId": id, "NumberOfBytes": 16, "EncryptionContext": context}), 16),
        (json!({"KeyId": id, "NumberOfBytes": 1024, "EncryptionContext": context}), 1024),
    ] {
        let dk = aws.ok("GenerateDataKey", request).await;
        assert_eq!(unb64(&dk["Plaintext"]).len(), len);
        let opened =
            aws.ok("Decrypt", json!({"CiphertextBlob": dk["CiphertextBlob"], "EncryptionContext": context})).await;
        assert_eq!(opened["Plaintext"], dk["Plaintext"]);
    }
    let wrapped = aws.ok("GenerateDataKeyWithoutPlaintext", json!({"KeyId": arn, "NumberOfBytes": 32})).await;
    assert!(wrapped.get("Plaintext").is_none());
    assert_eq!(
        unb64(&aws.ok("Decrypt", json!({"CiphertextBlob": wrapped["CiphertextBlob"]})).await["Plaintext"]).len(),
        32
    );

    // ReEncrypt to another key, then Decrypt naming the old key is IncorrectKey.
    let other = aws.ok("CreateKey", json!({})).await["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let moved = aws
        .ok("ReEncrypt", json!({"CiphertextBlob": enc["CiphertextBlob"], "SourceEncryptionContext": context, "DestinationKeyId": other}))
        .await;
    assert_eq!(moved["SourceKeyId"], arn);
    let incorrect = aws.call("Decrypt", json!({"CiphertextBlob": moved["CiphertextBlob"], "KeyId": arn})).await;
    assert_eq!(incorrect.error(), "IncorrectKeyException");
    assert_eq!(
        unb64(&aws.ok("Decrypt", json!({"CiphertextBlob": moved["CiphertextBlob"]})).await["Plaintext"]),
        b"hello"
    );

    let random = aws.ok("GenerateRandom", json!({"NumberOfBytes": 64})).await;
    assert_eq!(unb64(&random["Plaintext"]).len(), 64);

    // One blob, both APIs: the AWS ciphertext decrypts through /kms/v1.
    let native = Http::new(&server)
        .raw(
            Method::POST,
            "/kms/v1/decrypt",
            Some(ADMIN),
            Some("application/json"),
            serde_json::to_vec(&json!({"ciphertext_blob": enc["CiphertextBlob"], "encryption_context": context}))
                .unwrap(),
        )
        .await;
    assert_eq!(native.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn key_states_and_lookups_give_the_aws_error_names() {
    let (server, aws, _) = server("states").await;
    let id = aws.ok("CreateKey", json!({})).await["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let encrypt = json!({"KeyId": id, "Plaintext": b64(b"x")});

    aws.ok("DisableKey", json!({"KeyId": id})).await;
    assert_eq!(aws.call("Encrypt", encrypt.clone()).await.error(), "DisabledException");
    aws.ok("EnableKey", json!({"KeyId": id})).await;
    let scheduled = aws.ok("ScheduleKeyDeletion", json!({"KeyId": id, "PendingWindowInDays": 7})).await;
    assert_eq!(scheduled["KeyState"], "PendingDeletion");
    assert_eq!(scheduled["PendingWindowInDays"], 7);
    assert_eq!(aws.call("Encrypt", encrypt.clone()).await.error(), "KMSInvalidStateException");
    assert_eq!(
        aws.call("ScheduleKeyDeletion", json!({"KeyId": id, "PendingWindowInDays": 3})).await.error(),
        "ValidationException"
    );
    aws.ok("CancelKeyDeletion", json!({"KeyId": id})).await;
    aws.ok("EnableKey", json!({"KeyId": id})).await;
    aws.ok("Encrypt", encrypt).await;

    for missing in [
        "nope",
        "arn:aws:kms:us-east-1:000000000000:key/nope",
        "alias/nope",
        "arn:aws:kms:eu-west-1:000000000000:key/x",
    ] {
        let answer = aws.call("DescribeKey", json!({"KeyId": missing})).await;
        assert_eq!((answer.status, answer.error()), (StatusCode::BAD_REQUEST, "NotFoundException"), "{missing}");
    }
    assert_eq!(aws.call("DescribeKey", json!({"KeyId": "arn:aws:kms:x"})).await.error(), "InvalidArnException");
    let unsupported = aws.call("CreateGrant", json!({})).await;
    assert_eq!(unsupported.error(), "UnsupportedOperationException");
    assert!(unsupported.body["message"].as_str().unwrap().contains("CreateGrant"));
    assert!(unsupported.headers.contains_key("x-amzn-requestid"));
    server.stop().await;
}

#[tokio::test]
async fn aliases_are_created_used_moved_listed_and_deleted() {
    let (server, aws, _) = server("aliases").await;
    let first = aws.ok("CreateKey", json!({})).await["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let second = aws.ok("CreateKey", json!({})).await["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    aws.ok("CreateAlias", json!({"AliasName": "alias/orders", "TargetKeyId": first})).await;
    let dup = aws.call("CreateAlias", json!({"AliasName": "alias/orders", "TargetKeyId": second})).await;
    assert_eq!(dup.error(), "AlreadyExistsException");
    assert_eq!(
        aws.call("CreateAlias", json!({"AliasName": "alias/aws/x", "TargetKeyId": first})).await.error(),
        "ValidationException"
    );
    assert_eq!(
        aws.call("CreateAlias", json!({"AliasName": "alias/x", "TargetKeyId": "missing"})).await.error(),
        "NotFoundException"
    );

    let alias_arn = "arn:aws:kms:us-east-1:000000000000:alias/orders";
    for key_ref in ["alias/orders", alias_arn] {
        let enc = aws.ok("Encrypt", json!({"KeyId": key_ref, "Plaintext": b64(b"x")})).await;
        assert_eq!(enc["KeyId"], format!("arn:aws:kms:us-east-1:000000000000:key/{first}"));
        aws.ok("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"], "KeyId": key_ref})).await;
    }
    aws.ok("UpdateAlias", json!({"AliasName": "alias/orders", "TargetKeyId": second})).await;
    let described = aws.ok("DescribeKey", json!({"KeyId": "alias/orders"})).await;
    assert_eq!(described["KeyMetadata"]["KeyId"], second);
    aws.ok("CreateAlias", json!({"AliasName": "alias/billing", "TargetKeyId": first})).await;
    let all = aws.ok("ListAliases", json!({"Limit": 1})).await;
    assert_eq!(all["Aliases"][0]["AliasName"], "alias/billing");
    assert_eq!(all["Truncated"], true);
    let rest = aws.ok("ListAliases", json!({"Marker": all["NextMarker"]})).await;
    assert_eq!(rest["Aliases"][0]["AliasName"], "alias/orders");
    assert_eq!(rest["Aliases"][0]["AliasArn"], alias_arn);
    assert_eq!(rest["Aliases"][0]["TargetKeyId"], second);
    let of_first = aws.ok("ListAliases", json!({"KeyId": first})).await;
    assert_eq!(of_first["Aliases"].as_array().unwrap().len(), 1);
    aws.ok("DeleteAlias", json!({"AliasName": "alias/orders"})).await;
    assert_eq!(aws.call("DescribeKey", json!({"KeyId": "alias/orders"})).await.error(), "NotFoundException");
    assert_eq!(aws.call("DeleteAlias", json!({"AliasName": "alias/orders"})).await.error(), "NotFoundException");
    server.stop().await;
}

#[tokio::test]
async fn lifecycle_metadata_tags_policy_and_paging() {
    let (server, aws, _) = server("lifecycle").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(aws.ok("CreateKey", json!({})).await["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned());
    }
    let id = &ids[0];
    aws.ok("UpdateKeyDescription", json!({"KeyId": id, "Description": "new"})).await;
    aws.ok(
        "TagResource",
        json!({"KeyId": id, "Tags": [{"TagKey": "a", "TagValue": "1"}, {"TagKey": "b", "TagValue": "2"}]}),
    )
    .await;
    aws.ok("UntagResource", json!({"KeyId": id, "TagKeys": ["b"]})).await;
    let tags = aws.ok("ListResourceTags", json!({"KeyId": id})).await;
    assert_eq!(tags["Tags"], json!([{"TagKey": "a", "TagValue": "1"}]));
    let meta = aws.ok("DescribeKey", json!({"KeyId": id})).await;
    assert_eq!(meta["KeyMetadata"]["Description"], "new");
    let rotated = aws.ok("RotateKeyOnDemand", json!({"KeyId": id})).await;
    assert!(rotated["KeyId"].as_str().unwrap().ends_with(id.as_str()));
    // Automatic rotation: the period is kept as a reserved tag, which tag operations may not
    // touch and the tag list does not show.
    let off = aws.ok("GetKeyRotationStatus", json!({"KeyId": id})).await;
    assert_eq!(off["KeyRotationEnabled"], false);
    assert_eq!(
        aws.call("EnableKeyRotation", json!({"KeyId": id, "RotationPeriodInDays": 30})).await.error(),
        "ValidationException"
    );
    aws.ok("EnableKeyRotation", json!({"KeyId": id, "RotationPeriodInDays": 90})).await;
    let on = aws.ok("GetKeyRotationStatus", json!({"KeyId": id})).await;
    assert_eq!((on["KeyRotationEnabled"].clone(), on["RotationPeriodInDays"].clone()), (json!(true), json!(90)));
    assert!(on["NextRotationDate"].as_f64().unwrap() > on["OnDemandRotationStartDate"].as_f64().unwrap());
    assert_eq!(
        aws.ok("ListResourceTags", json!({"KeyId": id})).await["Tags"],
        json!([{"TagKey": "a", "TagValue": "1"}])
    );
    let reserved = json!({"KeyId": id, "Tags": [{"TagKey": "kms:rotation-period-days", "TagValue": "1"}]});
    assert_eq!(aws.call("TagResource", reserved).await.error(), "TagException");
    assert_eq!(
        aws.call("UntagResource", json!({"KeyId": id, "TagKeys": ["kms:rotation-period-days"]})).await.error(),
        "TagException"
    );
    aws.ok("DisableKeyRotation", json!({"KeyId": id})).await;
    assert_eq!(aws.ok("GetKeyRotationStatus", json!({"KeyId": id})).await["KeyRotationEnabled"], false);
    let policy = aws.ok("GetKeyPolicy", json!({"KeyId": id, "PolicyName": "default"})).await;
    let parsed: Value = serde_json::from_str(policy["Policy"].as_str().unwrap()).unwrap();
    assert_eq!(parsed["Statement"][0]["Action"], "kms:*");

    // Paging: one key a page, every key once, the last page untruncated.
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut request = json!({"Limit": 1});
        if let Some(m) = &marker {
            request["Marker"] = json!(m);
        }
        let page = aws.ok("ListKeys", request).await;
        for key in page["Keys"].as_array().unwrap() {
            assert!(key["KeyArn"].as_str().unwrap().starts_with("arn:aws:kms:us-east-1:000000000000:key/"));
            seen.push(key["KeyId"].as_str().unwrap().to_owned());
        }
        if page["Truncated"] == json!(false) {
            assert!(page.get("NextMarker").is_none());
            break;
        }
        marker = Some(page["NextMarker"].as_str().unwrap().to_owned());
    }
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);
    assert_eq!(aws.call("ListKeys", json!({"Marker": "not/a/marker"})).await.error(), "InvalidMarkerException");
    assert_eq!(aws.call("ListKeys", json!({"Limit": 0})).await.error(), "ValidationException");
    server.stop().await;
}

#[tokio::test]
async fn access_keys_carry_their_identitys_grants() {
    let (server, admin, app) = server("grants").await;
    // The app identity may generate data keys and decrypt on app-* keys only.
    let native = Http::new(&server);
    for name in ["app-1", "other"] {
        let r = native
            .raw(
                Method::POST,
                "/kms/v1/keys",
                Some(ADMIN),
                Some("application/json"),
                format!(r#"{{"key_name":"{name}"}}"#),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let dk = app.ok("GenerateDataKey", json!({"KeyId": "app-1", "KeySpec": "AES_256"})).await;
    app.ok("Decrypt", json!({"CiphertextBlob": dk["CiphertextBlob"]})).await;
    let denied = app.call("GenerateDataKey", json!({"KeyId": "other", "KeySpec": "AES_256"})).await;
    assert_eq!((denied.status, denied.error()), (StatusCode::BAD_REQUEST, "AccessDeniedException"));
    assert_eq!(
        app.call("Encrypt", json!({"KeyId": "app-1", "Plaintext": b64(b"x")})).await.error(),
        "AccessDeniedException"
    );
    assert_eq!(app.call("CreateKey", json!({})).await.error(), "AccessDeniedException");
    // Aliases are resolved before authorization: an alias of a key the app may not use does
    // not open it, whatever the alias is called.
    admin.ok("CreateAlias", json!({"AliasName": "alias/app-other", "TargetKeyId": "other"})).await;
    let via_alias = app.call("GenerateDataKey", json!({"KeyId": "alias/app-other", "KeySpec": "AES_256"})).await;
    assert_eq!(via_alias.error(), "AccessDeniedException");
    assert_eq!(
        app.call("CreateAlias", json!({"AliasName": "alias/mine", "TargetKeyId": "app-1"})).await.error(),
        "AccessDeniedException"
    );
    // Decrypt is authorized on the key the ciphertext names, whatever KeyId says.
    let foreign = admin.ok("Encrypt", json!({"KeyId": "other", "Plaintext": b64(b"secret")})).await;
    let refused = app.call("Decrypt", json!({"CiphertextBlob": foreign["CiphertextBlob"], "KeyId": "app-1"})).await;
    assert_eq!(refused.error(), "AccessDeniedException");
    assert!(refused.body.get("Plaintext").is_none());
    server.stop().await;
}

/// One bad request: name, expected AWS error, client, target, body, how it is signed.
type Case<'a> = (&'a str, &'a str, &'a Aws, &'a str, Vec<u8>, How);

#[tokio::test]
async fn bad_requests_never_succeed_and_never_5xx() {
    let (server, aws, _) = server("matrix").await;
    let id = aws.ok("CreateKey", json!({})).await["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let body = serde_json::to_vec(&json!({"KeyId": id, "Plaintext": b64(b"x")})).unwrap();
    let wrong_secret = Aws {
        client: aws.client.clone(),
        host: aws.host.clone(),
        key: Key { id: aws.key.id.clone(), secret: Zeroizing::new("wrong".into()) },
    };
    let unknown = Aws {
        client: aws.client.clone(),
        host: aws.host.clone(),
        key: Key { id: "AKIAUNKNOWN000000000".into(), secret: aws.key.secret.clone() },
    };
    let json_body = |v: Value| serde_json::to_vec(&v).unwrap();
    let clock = |clock_minutes| How { clock_minutes, ..How::default() };
    let tamper = |tamper| How { tamper, ..How::default() };
    let ok = How::default();
    let cases: Vec<Case<'_>> = vec![
        ("bad secret", "InvalidSignatureException", &wrong_secret, "Encrypt", body.clone(), How::default()),
        ("unknown key", "UnrecognizedClientException", &unknown, "Encrypt", body.clone(), How::default()),
        ("expired", "InvalidSignatureException", &aws, "Encrypt", body.clone(), clock(-10)),
        ("from the future", "InvalidSignatureException", &aws, "Encrypt", body.clone(), clock(10)),
        (
            "wrong service",
            "InvalidSignatureException",
            &aws,
            "Encrypt",
            body.clone(),
            How { service: "s3", ..How::default() },
        ),
        (
            "wrong region",
            "InvalidSignatureException",
            &aws,
            "Encrypt",
            body.clone(),
            How { region: "eu-west-1", ..How::default() },
        ),
        (
            "tampered body",
            "InvalidSignatureException",
            &aws,
            "Encrypt",
            body.clone(),
            tamper(Tamper::Body(json_body(json!({"KeyId": id, "Plaintext": b64(b"y")})))),
        ),
        (
            "tampered target",
            "InvalidSignatureException",
            &aws,
            "Encrypt",
            body.clone(),
            tamper(Tamper::Header("x-amz-target", Some("TrentService.ScheduleKeyDeletion"))),
        ),
        (
            "unsigned",
            "MissingAuthenticationTokenException",
            &aws,
            "Encrypt",
            body.clone(),
            tamper(Tamper::Header("authorization", None)),
        ),
        (
            "missing signed header",
            "IncompleteSignatureException",
            &aws,
            "Encrypt",
            body.clone(),
            tamper(Tamper::Header("content-type", None)),
        ),
        ("malformed JSON", "SerializationException", &aws, "Encrypt", b"{\"KeyId\":".to_vec(), How::default()),
        ("oversized body", "ValidationException", &aws, "Encrypt", vec![b' '; 2 << 20], How::default()),
        (
            "oversized plaintext",
            "ValidationException",
            &aws,
            "Encrypt",
            json_body(json!({"KeyId": id, "Plaintext": b64(&[0; 4097])})),
            How::default(),
        ),
        (
            "oversized ciphertext",
            "ValidationException",
            &aws,
            "Decrypt",
            json_body(json!({"CiphertextBlob": b64(&[0; 6145])})),
            How::default(),
        ),
        (
            "garbage ciphertext",
            "InvalidCiphertextException",
            &aws,
            "Decrypt",
            json_body(json!({"CiphertextBlob": b64(b"garbage")})),
            How::default(),
        ),
        ("long KeyId", "ValidationException", &aws, "DescribeKey", json_body(json!({"KeyId": "k".repeat(2049)})), ok),
    ];
    let mut answers = Vec::new();
    for (case, expected, client, target, body, how) in cases {
        answers.push((case, expected, client.send(target, body, &how).await));
    }
    let (mut successes, mut server_errors) = (0, 0);
    for (case, expected, answer) in &answers {
        successes += usize::from(answer.status.is_success());
        server_errors += usize::from(answer.status.is_server_error());
        assert_eq!(answer.error(), *expected, "{case}: {}", answer.body);
        assert!(answer.headers.contains_key("x-amzn-requestid"), "{case}");
    }
    assert_eq!((successes, server_errors), (0, 0));
    server.stop().await;
}

/// `GetParametersForImport` for `arn` with `spec`, checked; the public key and token.
async fn import_parameters(aws: &Aws, arn: &str, spec: &str) -> (Vec<u8>, String) {
    let params = aws
        .ok(
            "GetParametersForImport",
            json!({"KeyId": arn, "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": spec}),
        )
        .await;
    assert_eq!(params["KeyId"], arn);
    let valid_for =
        params["ParametersValidTo"].as_f64().unwrap() - time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    assert!((23.0 * 3600.0..=24.0 * 3600.0 + 60.0).contains(&valid_for), "{valid_for}");
    (unb64(&params["PublicKey"]), params["ImportToken"].as_str().unwrap().to_owned())
}

fn wrap(public_key: &[u8], material: &[u8]) -> String {
    b64(&kms_crypto::wrapping::wrap_material(public_key, material).unwrap())
}

#[tokio::test]
async fn byok_external_keys_import_use_delete_and_reimport_only_their_material() {
    let (server, aws, app) = server("byok").await;
    let meta = aws.ok("CreateKey", json!({"Origin": "EXTERNAL", "Description": "byok"})).await["KeyMetadata"].clone();
    let arn = meta["Arn"].as_str().unwrap().to_owned();
    assert_eq!((meta["Origin"].as_str(), meta["KeyState"].as_str()), (Some("EXTERNAL"), Some("PendingImport")));
    assert_eq!(meta["Enabled"], false);
    assert_eq!(meta["ExpirationModel"], "KEY_MATERIAL_DOES_NOT_EXPIRE");
    let encrypt = json!({"KeyId": arn, "Plaintext": b64(b"brought my own key"), "EncryptionContext": {"a": "b"}});
    assert_eq!(aws.call("Encrypt", encrypt.clone()).await.error(), "KMSInvalidStateException");

    let material = [0x42u8; 32];
    let (public, token) = import_parameters(&aws, &arn, "RSA_3072").await;
    let import = |token: &str, wrapped: String| {
        json!({"KeyId": arn, "ImportToken": token, "EncryptedKeyMaterial": wrapped,
               "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"})
    };
    // A token that is not one, a token of other parameters, wrapped bytes that do not unwrap,
    // material of the wrong length.
    let bogus = b64(&[7u8; 64]);
    assert_eq!(
        aws.call("ImportKeyMaterial", import(&bogus, wrap(&public, &material))).await.error(),
        "InvalidImportTokenException"
    );
    let (other_public, other_token) = import_parameters(&aws, &arn, "RSA_4096").await;
    assert_eq!(
        aws.call("ImportKeyMaterial", import(&other_token, wrap(&public, &material))).await.error(),
        "InvalidCiphertextException"
    );
    assert_eq!(
        aws.call("ImportKeyMaterial", import(&token, wrap(&public, &[1u8; 16]))).await.error(),
        "IncorrectKeyMaterialException"
    );
    // The app identity has no import grant.
    assert_eq!(
        app.call("ImportKeyMaterial", import(&token, wrap(&public, &material))).await.error(),
        "AccessDeniedException"
    );

    let imported = aws.ok("ImportKeyMaterial", import(&other_token, wrap(&other_public, &material))).await;
    assert_eq!(imported["KeyId"], arn);
    let described = aws.ok("DescribeKey", json!({"KeyId": arn})).await["KeyMetadata"].clone();
    assert_eq!((described["KeyState"].as_str(), described["Enabled"].as_bool()), (Some("Enabled"), Some(true)));
    let blob = aws.ok("Encrypt", encrypt).await["CiphertextBlob"].as_str().unwrap().to_owned();
    let decrypt = json!({"CiphertextBlob": blob, "EncryptionContext": {"a": "b"}});
    assert_eq!(unb64(&aws.ok("Decrypt", decrypt.clone()).await["Plaintext"]), b"brought my own key");
    // A used token is spent.
    assert_eq!(
        aws.call("ImportKeyMaterial", import(&other_token, wrap(&other_public, &material))).await.error(),
        "InvalidImportTokenException"
    );

    let deleted = aws.ok("DeleteImportedKeyMaterial", json!({"KeyId": arn})).await;
    assert_eq!(deleted["KeyId"], arn);
    assert_eq!(aws.ok("DescribeKey", json!({"KeyId": arn})).await["KeyMetadata"]["KeyState"], "PendingImport");
    assert_eq!(aws.call("Decrypt", decrypt.clone()).await.error(), "KMSInvalidStateException");
    let (public, token) = import_parameters(&aws, &arn, "RSA_3072").await;
    assert_eq!(
        aws.call("ImportKeyMaterial", import(&token, wrap(&public, &[0x43u8; 32]))).await.error(),
        "IncorrectKeyMaterialException"
    );
    // The same material again, with an expiry this time.
    let valid_to = (time::OffsetDateTime::now_utc().unix_timestamp() + 3600) as f64;
    let with_expiry = json!({"KeyId": arn, "ImportToken": token, "EncryptedKeyMaterial": wrap(&public, &material),
                             "ExpirationModel": "KEY_MATERIAL_EXPIRES", "ValidTo": valid_to});
    aws.ok("ImportKeyMaterial", with_expiry).await;
    let described = aws.ok("DescribeKey", json!({"KeyId": arn})).await["KeyMetadata"].clone();
    assert_eq!(described["ExpirationModel"], "KEY_MATERIAL_EXPIRES");
    assert_eq!(described["ValidTo"].as_f64(), Some(valid_to));
    assert_eq!(unb64(&aws.ok("Decrypt", decrypt).await["Plaintext"]), b"brought my own key");
    server.stop().await;
}

#[tokio::test]
async fn byok_requests_kms_does_not_serve_get_the_errors_botocore_lists() {
    let (server, aws, _) = server("byok-refused").await;
    let own = aws.ok("CreateKey", json!({})).await["KeyMetadata"]["Arn"].as_str().unwrap().to_owned();
    assert_eq!(aws.call("CreateKey", json!({"Origin": "AWS_CLOUDHSM"})).await.error(), "UnsupportedOperationException");
    assert_eq!(
        aws.call("CreateKey", json!({"Origin": "EXTERNAL_KEY_STORE"})).await.error(),
        "UnsupportedOperationException"
    );
    let params =
        |algorithm: &str, spec: &str| json!({"KeyId": own, "WrappingAlgorithm": algorithm, "WrappingKeySpec": spec});
    for (algorithm, spec, error) in [
        ("RSAES_OAEP_SHA_1", "RSA_3072", "UnsupportedOperationException"),
        ("RSAES_PKCS1_V1_5", "RSA_4096", "UnsupportedOperationException"),
        ("RSA_AES_KEY_WRAP_SHA_256", "RSA_4096", "UnsupportedOperationException"),
        ("RSAES_OAEP_SHA_256", "RSA_2048", "UnsupportedOperationException"),
        ("RSAES_OAEP_SHA_256", "SM2", "UnsupportedOperationException"),
        ("OAEP", "RSA_3072", "ValidationException"),
        ("RSAES_OAEP_SHA_256", "RSA_8192", "ValidationException"),
        // A key kms generated takes no material.
        ("RSAES_OAEP_SHA_256", "RSA_3072", "UnsupportedOperationException"),
    ] {
        assert_eq!(
            aws.call("GetParametersForImport", params(algorithm, spec)).await.error(),
            error,
            "{algorithm} {spec}"
        );
    }
    let missing =
        aws.call("GetParametersForImport", json!({"KeyId": own, "WrappingAlgorithm": "RSAES_OAEP_SHA_256"})).await;
    // A missing required member is refused by the shared body parser, as for every operation.
    assert_eq!(missing.error(), "SerializationException");
    let import = |extra: Value| {
        let mut body = json!({"KeyId": own, "ImportToken": b64(&[1; 32]), "EncryptedKeyMaterial": b64(&[2; 384])});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    for (extra, error) in [
        (json!({"ExpirationModel": "KEY_MATERIAL_EXPIRES"}), "ValidationException"),
        (
            json!({"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE", "ValidTo": 4_000_000_000u64}),
            "ValidationException",
        ),
        (json!({"ExpirationModel": "SOMETIMES"}), "ValidationException"),
        (json!({"ImportType": "OTHER"}), "ValidationException"),
        (json!({"KeyMaterialId": "abc"}), "UnsupportedOperationException"),
        (json!({"ImportToken": "not base64!"}), "ValidationException"),
    ] {
        assert_eq!(aws.call("ImportKeyMaterial", import(extra.clone())).await.error(), error, "{extra}");
    }
    let delete = aws.call("DeleteImportedKeyMaterial", json!({"KeyId": own, "KeyMaterialId": "abc"})).await;
    assert_eq!(delete.error(), "UnsupportedOperationException");
    server.stop().await;
}
