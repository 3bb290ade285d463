//! Aliases on the native API over real loopback HTTP: the `/kms/v1/aliases` routes, an alias
//! wherever a key id is accepted (`alias%2Fname` in a path, `decrypt`'s `key_id`,
//! `re_encrypt`'s `destination_key_id`), and authorization on the key an alias resolves to.

mod common;

use common::{ADMIN, APP, AUDITOR, Http, TestServer};
use http::{Method, StatusCode};
use serde_json::{Value, json};

async fn create_key(http: &Http, name: &str) {
    let created = http.call(Method::POST, "/kms/v1/keys", ADMIN, Some(json!({ "key_name": name }))).await;
    assert_eq!(created.status, StatusCode::CREATED);
}

async fn create_alias(http: &Http, name: &str, target: &str) -> Value {
    let body = json!({ "alias_name": name, "target_key_id": target });
    let created = http.call(Method::POST, "/kms/v1/aliases", ADMIN, Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&created.body));
    created.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_are_managed_listed_and_moved() {
    let server = TestServer::start().await;
    let http = Http::new(&server);
    create_key(&http, "app-1").await;
    create_key(&http, "other-1").await;

    let created = create_alias(&http, "alias/team/app", "app-1").await;
    assert_eq!(
        (created["alias_name"].as_str(), created["target_key_id"].as_str()),
        (Some("alias/team/app"), Some("app-1"))
    );
    assert!(created["creation_date"].is_string());
    create_alias(&http, "alias/other", "other-1").await;

    let again = json!({ "alias_name": "alias/team/app", "target_key_id": "other-1" });
    let taken = http.call(Method::POST, "/kms/v1/aliases", ADMIN, Some(again)).await;
    assert_eq!((taken.status, taken.code()), (StatusCode::CONFLICT, "key_already_exists".into()));
    let to_alias = json!({ "alias_name": "alias/x", "target_key_id": "alias/other" });
    let refused = http.call(Method::POST, "/kms/v1/aliases", ADMIN, Some(to_alias)).await;
    assert_eq!((refused.status, refused.field()), (StatusCode::BAD_REQUEST, "target_key_id".into()));
    let missing = json!({ "alias_name": "alias/x", "target_key_id": "no-such-key" });
    let refused = http.call(Method::POST, "/kms/v1/aliases", ADMIN, Some(missing)).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::NOT_FOUND, "key_not_found".into()));
    let reserved = json!({ "alias_name": "alias/aws/s3", "target_key_id": "app-1" });
    let refused = http.call(Method::POST, "/kms/v1/aliases", ADMIN, Some(reserved)).await;
    assert_eq!((refused.status, refused.field()), (StatusCode::BAD_REQUEST, "alias_name".into()));

    // Listing pages in name order and filters by key.
    let page = http.ok(Method::GET, "/kms/v1/aliases?limit=1", ADMIN, None).await;
    assert_eq!(page["aliases"][0]["alias_name"], "alias/other");
    assert_eq!((page["truncated"].as_bool(), page["next_marker"].as_str()), (Some(true), Some("alias/other")));
    let rest = http.ok(Method::GET, "/kms/v1/aliases?marker=alias%2Fother", ADMIN, None).await;
    assert_eq!(rest["aliases"].as_array().unwrap().len(), 1);
    assert_eq!(
        (rest["aliases"][0]["alias_name"].as_str(), rest["truncated"].as_bool()),
        (Some("alias/team/app"), Some(false))
    );
    let of_key = http.ok(Method::GET, "/kms/v1/aliases?key_id=other-1", ADMIN, None).await;
    assert_eq!(of_key["aliases"].as_array().unwrap().len(), 1);
    let bad = http.call(Method::GET, "/kms/v1/aliases?limit=101", ADMIN, None).await;
    assert_eq!((bad.status, bad.field()), (StatusCode::BAD_REQUEST, "limit".into()));

    // Moving: the alias names the other key from now on.
    let moved = http
        .ok(Method::PUT, "/kms/v1/aliases/alias%2Fteam%2Fapp", ADMIN, Some(json!({"target_key_id": "other-1"})))
        .await;
    assert_eq!(
        (moved["target_key_id"].as_str(), moved["creation_date"].as_str()),
        (Some("other-1"), created["creation_date"].as_str())
    );
    let described = http.ok(Method::GET, "/kms/v1/keys/alias%2Fteam%2Fapp", ADMIN, None).await;
    assert_eq!(described["key_metadata"]["key_id"], "other-1");
    let unknown =
        http.call(Method::PUT, "/kms/v1/aliases/alias%2Fnone", ADMIN, Some(json!({"target_key_id": "app-1"}))).await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::NOT_FOUND, "key_not_found".into()));
    let not_alias =
        http.call(Method::PUT, "/kms/v1/aliases/app-1", ADMIN, Some(json!({"target_key_id": "app-1"}))).await;
    assert_eq!((not_alias.status, not_alias.field()), (StatusCode::BAD_REQUEST, "alias_name".into()));

    // Deleting: the alias goes, the key stays.
    let deleted = http.ok(Method::DELETE, "/kms/v1/aliases/alias%2Fteam%2Fapp", ADMIN, None).await;
    assert_eq!(deleted, json!({"alias_name": "alias/team/app", "target_key_id": "other-1"}));
    let twice = http.call(Method::DELETE, "/kms/v1/aliases/alias%2Fteam%2Fapp", ADMIN, None).await;
    assert_eq!((twice.status, twice.code()), (StatusCode::NOT_FOUND, "key_not_found".into()));
    let gone = http.call(Method::GET, "/kms/v1/keys/alias%2Fteam%2Fapp", ADMIN, None).await;
    assert_eq!((gone.status, gone.code()), (StatusCode::NOT_FOUND, "key_not_found".into()));
    http.ok(Method::GET, "/kms/v1/keys/other-1", ADMIN, None).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_works_wherever_a_key_id_does() {
    let server = TestServer::start().await;
    let http = Http::new(&server);
    create_key(&http, "app-1").await;
    create_key(&http, "app-2").await;
    create_alias(&http, "alias/app", "app-1").await;
    create_alias(&http, "alias/second", "app-2").await;

    let ctx = json!({"bucket": "photos"});
    let sealed = http
        .ok(
            Method::POST,
            "/kms/v1/keys/alias%2Fapp/encrypt",
            ADMIN,
            Some(json!({"plaintext": "aGk=", "encryption_context": ctx})),
        )
        .await;
    assert_eq!(sealed["key_id"], "app-1");
    let blob = sealed["ciphertext_blob"].clone();
    let opened = http
        .ok(
            Method::POST,
            "/kms/v1/decrypt",
            ADMIN,
            Some(json!({"ciphertext_blob": blob, "encryption_context": ctx, "key_id": "alias/app"})),
        )
        .await;
    assert_eq!((opened["key_id"].as_str(), opened["plaintext"].as_str()), (Some("app-1"), Some("aGk=")));
    // An alias of another key than the ciphertext's: refused like a wrong key, without detail.
    let wrong = http
        .call(
            Method::POST,
            "/kms/v1/decrypt",
            ADMIN,
            Some(json!({"ciphertext_blob": blob, "encryption_context": ctx, "key_id": "alias/second"})),
        )
        .await;
    assert_eq!((wrong.status, wrong.code()), (StatusCode::BAD_REQUEST, "crypto_error".into()));
    let moved = http
        .ok(
            Method::POST,
            "/kms/v1/re-encrypt",
            ADMIN,
            Some(json!({"ciphertext_blob": blob, "source_encryption_context": ctx, "destination_key_id": "alias/second"})),
        )
        .await;
    assert_eq!((moved["source_key_id"].as_str(), moved["key_id"].as_str()), (Some("app-1"), Some("app-2")));
    let unknown = http
        .call(
            Method::POST,
            "/kms/v1/decrypt",
            ADMIN,
            Some(json!({"ciphertext_blob": blob, "encryption_context": ctx, "key_id": "alias/none"})),
        )
        .await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::NOT_FOUND, "key_not_found".into()));
    let malformed =
        http.call(Method::POST, "/kms/v1/keys/alias%2Fa%20b/encrypt", ADMIN, Some(json!({"plaintext": "aGk="}))).await;
    assert_eq!((malformed.status, malformed.field()), (StatusCode::BAD_REQUEST, "key_id".into()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_apply_to_the_key_an_alias_names() {
    let server = TestServer::start().await;
    let http = Http::new(&server);
    create_key(&http, "app-1").await;
    create_key(&http, "other-1").await;
    create_alias(&http, "alias/mine", "app-1").await;
    create_alias(&http, "alias/theirs", "other-1").await;

    // `app` may make data keys under app-*: through an alias of such a key, yes; through an
    // alias of another key, no, whatever the alias is called.
    let dk = http.ok(Method::POST, "/kms/v1/keys/alias%2Fmine/generate-data-key", APP, None).await;
    assert_eq!(dk["key_id"], "app-1");
    let refused = http.call(Method::POST, "/kms/v1/keys/alias%2Ftheirs/generate-data-key", APP, None).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "forbidden".into()));
    // An operation the identity may not do at all is refused before the alias is looked up:
    // the same answer whether it exists or not.
    for alias in ["alias%2Fmine", "alias%2Fnone"] {
        let refused = http
            .call(Method::POST, &format!("/kms/v1/keys/{alias}/encrypt"), APP, Some(json!({"plaintext": "aGk="})))
            .await;
        assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "forbidden".into()), "{alias}");
    }
    // Managing aliases takes `manage_aliases`, which `app` and the read-only `auditor` lack.
    for token in [APP, AUDITOR] {
        let body = json!({"alias_name": "alias/new", "target_key_id": "app-1"});
        let refused = http.call(Method::POST, "/kms/v1/aliases", token, Some(body)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let refused = http.call(Method::DELETE, "/kms/v1/aliases/alias%2Fmine", token, None).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
    }
    // Listing takes `list_keys`: the auditor (read) lists, `app` does not.
    let listed = http.ok(Method::GET, "/kms/v1/aliases", AUDITOR, None).await;
    assert_eq!(listed["aliases"].as_array().unwrap().len(), 2);
    let refused = http.call(Method::GET, "/kms/v1/aliases", APP, None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    server.stop().await;
}
