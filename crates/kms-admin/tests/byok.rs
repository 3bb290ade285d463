//! Import of key material (BYOK) over the native API: parameters, import, round trip,
//! deletion, and the refusals (malformed JSON, wrong token, wrong length, missing grant).

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{ADMIN, APP, Http, TestServer};
use http::{Method, StatusCode};
use serde_json::{Value, json};

async fn parameters(http: &Http, key: &str) -> (Vec<u8>, String) {
    let params = http
        .ok(
            Method::POST,
            &format!("/kms/v1/keys/{key}/import-parameters"),
            ADMIN,
            Some(json!({"wrapping_key_spec": "rsa_3072"})),
        )
        .await;
    assert!(params["parameters_valid_to"].is_string(), "{params}");
    let public_key = STANDARD.decode(params["public_key"].as_str().unwrap()).unwrap();
    (public_key, params["import_token"].as_str().unwrap().to_owned())
}

fn wrapped(public_key: &[u8], material: &[u8]) -> String {
    STANDARD.encode(kms_crypto::wrapping::wrap_material(public_key, material).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn material_is_imported_used_deleted_and_imported_again() {
    let server = TestServer::start().await;
    let http = Http::new(&server);
    let created =
        http.call(Method::POST, "/kms/v1/keys", ADMIN, Some(json!({"key_name": "byok-1", "origin": "external"}))).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.json()["key_metadata"]["key_state"], "pending_import");
    let refused =
        http.call(Method::POST, "/kms/v1/keys/byok-1/encrypt", ADMIN, Some(json!({"plaintext": "aGk="}))).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::CONFLICT, "invalid_key_state".into()));

    let material = [0x42u8; 32];
    let (public_key, token) = parameters(&http, "byok-1").await;
    let body = json!({"encrypted_key_material": wrapped(&public_key, &material), "import_token": token, "valid_to": "2999-01-01T00:00:00Z"});
    let imported = http.ok(Method::POST, "/kms/v1/keys/byok-1/import-material", ADMIN, Some(body.clone())).await;
    assert_eq!(imported["key_metadata"]["key_state"], "enabled");
    assert_eq!(imported["key_metadata"]["valid_to"], "2999-01-01T00:00:00Z");
    // The token is used up.
    let again = http.call(Method::POST, "/kms/v1/keys/byok-1/import-material", ADMIN, Some(body)).await;
    assert_eq!((again.status, again.code()), (StatusCode::BAD_REQUEST, "invalid_import_token".into()));

    let encrypted =
        http.ok(Method::POST, "/kms/v1/keys/byok-1/encrypt", ADMIN, Some(json!({"plaintext": "aGk="}))).await;
    let blob = encrypted["ciphertext_blob"].clone();
    let decrypted = http.ok(Method::POST, "/kms/v1/decrypt", ADMIN, Some(json!({"ciphertext_blob": blob}))).await;
    assert_eq!(decrypted["plaintext"], "aGk=");

    let deleted = http.ok(Method::DELETE, "/kms/v1/keys/byok-1/import-material", ADMIN, None).await;
    assert_eq!(deleted["key_metadata"]["key_state"], "pending_import");
    let refused = http.call(Method::POST, "/kms/v1/decrypt", ADMIN, Some(json!({"ciphertext_blob": blob}))).await;
    assert_eq!(refused.code(), "invalid_key_state");

    let (public_key, token) = parameters(&http, "byok-1").await;
    let other = json!({"encrypted_key_material": wrapped(&public_key, &[0x43u8; 32]), "import_token": token});
    let different = http.call(Method::POST, "/kms/v1/keys/byok-1/import-material", ADMIN, Some(other)).await;
    assert_eq!((different.status, different.code()), (StatusCode::BAD_REQUEST, "incorrect_key_material".into()));
    let same = json!({"encrypted_key_material": wrapped(&public_key, &material), "import_token": token});
    http.ok(Method::POST, "/kms/v1/keys/byok-1/import-material", ADMIN, Some(same)).await;
    let decrypted = http.ok(Method::POST, "/kms/v1/decrypt", ADMIN, Some(json!({"ciphertext_blob": blob}))).await;
    assert_eq!(decrypted["plaintext"], "aGk=");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_imports_are_refused_with_their_codes() {
    let server = TestServer::start().await;
    let http = Http::new(&server);
    http.ok(Method::POST, "/kms/v1/keys", ADMIN, Some(json!({"key_name": "byok-2", "origin": "external"}))).await;
    http.ok(Method::POST, "/kms/v1/keys", ADMIN, Some(json!({"key_name": "app-kms"}))).await;
    let (public_key, token) = parameters(&http, "byok-2").await;
    let path = "/kms/v1/keys/byok-2/import-material";

    let malformed = http.raw(Method::POST, path, Some(ADMIN), Some("application/json"), "{\"import_token\":").await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    let unknown_field = json!({"encrypted_key_material": "AA==", "import_token": token, "plaintext": "x"});
    assert_eq!(http.call(Method::POST, path, ADMIN, Some(unknown_field)).await.status, StatusCode::BAD_REQUEST);

    let mut wrong = STANDARD.decode(&token).unwrap();
    wrong[0] ^= 1;
    let body =
        json!({"encrypted_key_material": wrapped(&public_key, &[1u8; 32]), "import_token": STANDARD.encode(wrong)});
    let r = http.call(Method::POST, path, ADMIN, Some(body)).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_import_token".into()));

    let body = json!({"encrypted_key_material": wrapped(&public_key, &[1u8; 16]), "import_token": token});
    let r = http.call(Method::POST, path, ADMIN, Some(body)).await;
    assert_eq!(
        (r.status, r.code(), r.field()),
        (StatusCode::BAD_REQUEST, "invalid_request".into(), "encrypted_key_material".into())
    );

    let mut tampered = kms_crypto::wrapping::wrap_material(&public_key, &[1u8; 32]).unwrap();
    tampered[9] ^= 4;
    let body = json!({"encrypted_key_material": STANDARD.encode(tampered), "import_token": token});
    let r = http.call(Method::POST, path, ADMIN, Some(body)).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "crypto_error".into()));

    let sha1 = json!({"wrapping_algorithm": "rsaes_oaep_sha_1"});
    let r = http.call(Method::POST, "/kms/v1/keys/byok-2/import-parameters", ADMIN, Some(sha1)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = http.call(Method::POST, "/kms/v1/keys/app-kms/import-parameters", ADMIN, None).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "not_external_key".into()));

    // The app identity has no import grant, even on its own keys.
    let r = http.call(Method::POST, "/kms/v1/keys/app-kms/import-parameters", APP, None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = http.call(Method::DELETE, "/kms/v1/keys/byok-2/import-material", APP, None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let described: Value = http.ok(Method::GET, "/kms/v1/keys/byok-2", ADMIN, None).await;
    assert_eq!(described["key_metadata"]["key_state"], "pending_import");
    server.stop().await;
}
