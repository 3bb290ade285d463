//! An object store's PUT, ranged GET and multipart upload through the SSE pipeline, on the
//! local file backend: `cargo run -p kms --example sse_object_store`.
//!
//! The "store" is a directory: each object is a file of encrypted bytes plus a `.meta` file
//! holding the `ObjectMetadata` JSON. Walk-through in `docs/sse-integration.md`.

#![allow(clippy::print_stdout)] // an example prints what it does

use std::path::{Path, PathBuf};

use kms::config::{KmsConfig, LocalConfig, MasterKeySource};
use kms::encryption::pipeline::{DecryptStreamRequest, PartRequest};
use kms::encryption::service::EncryptionService;
use kms::encryption::sse::{CustomerKey, ObjectContext, ObjectMetadata, SseMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn paths(root: &Path, bucket: &str, key: &str) -> (PathBuf, PathBuf) {
    let base = root.join(format!("{bucket}--{}", key.replace('/', "_")));
    (base.with_extension("obj"), base.with_extension("meta"))
}

/// PutObject with SSE-KMS.
async fn put_object(service: &EncryptionService, root: &Path, key_id: &str, body: &[u8]) -> Result<(), Error> {
    let sse = SseMode::Kms { key_id: Some(key_id.into()), context: [("department".into(), "finance".into())].into() };
    let object = ObjectContext { bucket: "reports".into(), object_key: "2026/q1.csv".into(), sse };
    let mut stream = service.encrypt_stream(body, object).await?;
    let (data, meta) = paths(root, "reports", "2026/q1.csv");
    let mut file = tokio::fs::File::create(&data).await?;
    tokio::io::copy(&mut stream, &mut file).await?;
    file.flush().await?;
    for (name, value) in stream.response_headers().iter() {
        println!("PUT  response header {name}: {value}");
    }
    let metadata = stream.finish()?;
    tokio::fs::write(&meta, metadata.to_json()).await?;
    println!("PUT  {} plaintext bytes stored as {} bytes", metadata.plaintext_size, metadata.ciphertext_size);
    Ok(())
}

/// GetObject with `Range: bytes=first-last` (inclusive, as in HTTP).
async fn get_range(service: &EncryptionService, root: &Path, first: u64, last: u64) -> Result<Vec<u8>, Error> {
    let (data, meta) = paths(root, "reports", "2026/q1.csv");
    let metadata = ObjectMetadata::from_json(&tokio::fs::read_to_string(&meta).await?)?;
    let range = first..last + 1;
    println!("GET  bytes={first}-{last}: fetching {} stored bytes", metadata.plan(range.clone())?.fetch_len());
    let request = DecryptStreamRequest {
        bucket: "reports",
        object_key: "2026/q1.csv",
        metadata: &metadata,
        customer_key: None,
        range: Some(range),
    };
    let file = tokio::fs::File::open(&data).await?;
    let mut stream = service.decrypt_seekable(file, request).await?;
    let mut out = Vec::with_capacity(stream.plaintext_len() as usize);
    stream.read_to_end(&mut out).await?;
    Ok(out)
}

/// A multipart upload with SSE-C: three parts uploaded out of order, completed, read back.
async fn multipart(service: &EncryptionService, root: &Path) -> Result<(), Error> {
    let raw_key = [42u8; 32]; // the client's key; it sends key and MD5 with every request
    let key = || CustomerKey::new(&raw_key, &CustomerKey::md5_of(&raw_key));
    let object =
        ObjectContext { bucket: "media".into(), object_key: "movie.mp4".into(), sse: SseMode::Customer(key()?) };
    let upload = service.create_multipart_upload(object).await?;
    let bodies = [vec![1u8; 6 * 1024 * 1024], vec![2u8; 5 * 1024 * 1024 + 123], vec![3u8; 1000]];
    let mut parts = Vec::new();
    for number in [2u32, 1, 3] {
        let customer_key = key()?;
        let request = PartRequest {
            bucket: "media",
            object_key: "movie.mp4",
            upload: &upload.metadata,
            part_number: number,
            customer_key: Some(&customer_key),
        };
        let mut stream = service.encrypt_part(&bodies[number as usize - 1][..], request).await?;
        let path = root.join(format!("movie.part{number}"));
        let mut file = tokio::fs::File::create(&path).await?;
        tokio::io::copy(&mut stream, &mut file).await?;
        file.flush().await?;
        parts.push(stream.finish()?);
        println!("PART {number} stored");
    }
    parts.sort_by_key(|p| p.number);
    let metadata = upload.metadata.complete_multipart(parts)?;
    // The store concatenates the parts in order.
    let (data, _) = paths(root, "media", "movie.mp4");
    let mut whole = tokio::fs::File::create(&data).await?;
    for number in 1..=3 {
        whole.write_all(&tokio::fs::read(root.join(format!("movie.part{number}"))).await?).await?;
    }
    whole.flush().await?;
    let boundary = 6 * 1024 * 1024u64;
    let customer_key = key()?;
    let request = DecryptStreamRequest {
        bucket: "media",
        object_key: "movie.mp4",
        metadata: &metadata,
        customer_key: Some(&customer_key),
        range: Some(boundary - 2..boundary + 2),
    };
    let mut across = Vec::new();
    service.decrypt_seekable(tokio::fs::File::open(&data).await?, request).await?.read_to_end(&mut across).await?;
    println!("GET  multipart bytes across the part 1/2 boundary: {across:?}");
    assert_eq!(across, [1, 1, 2, 2]);
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    // In production the master key comes from `Env`, `File` or a passphrase.
    let master_key = MasterKeySource::Key { key: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into() };
    let mut config = KmsConfig::local(LocalConfig::new(dir.path().join("keys"), master_key));
    config.default_key_id = Some("store-default".into());

    let manager = kms::init_global_kms_service_manager();
    manager.configure(config).await?;
    manager.start().await?;
    let service = kms::get_global_encryption_service().await.ok_or("service not running")?;
    let key_id = service.create_key(Default::default()).await?.key_id;

    let body: Vec<u8> = (0..200_000u32).flat_map(|i| format!("{i},row\n").into_bytes()).take(1_000_000).collect();
    put_object(&service, dir.path(), &key_id, &body).await?;
    let slice = get_range(&service, dir.path(), 500_000, 500_019).await?;
    assert_eq!(slice, body[500_000..500_020]);
    println!("GET  {:?}", String::from_utf8_lossy(&slice));
    multipart(&service, dir.path()).await?;
    manager.stop().await?;
    Ok(())
}
