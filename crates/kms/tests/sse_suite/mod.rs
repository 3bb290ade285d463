//! The SSE behaviour suite, run against every backend: `tests/sse_memory.rs`,
//! `tests/sse_local.rs` and `tests/sse_vault.rs` each provide an [`Env`] and expand
//! [`sse_suite!`]. Every object goes through the real `EncryptionService` of a running
//! `KmsServiceManager`, so stopping the service is "the KMS stopped".

#![allow(dead_code, unreachable_pub)]

use std::io::Cursor;
use std::ops::{ControlFlow, Range};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use kms::backends::BackendRegistry;
use kms::config::KmsConfig;
use kms::encryption::key_cache::{DataKeyCacheConfig, KmsUnavailablePolicy};
use kms::encryption::pipeline::{DecryptStreamRequest, PartRequest};
use kms::encryption::rewrap::{RewrapOptions, RewrapOutcome, RewrapRecord, RewrapRequest};
use kms::encryption::service::EncryptionService;
use kms::encryption::sse::{CustomerKey, ObjectContext, ObjectMetadata, PartInfo, SseKind, SseMode, headers};
use kms::error::KmsError;
use kms::service_manager::KmsServiceManager;
use kms::types::{CreateKeyRequest, DeleteKeyRequest, EncryptionContext, KeyIdRequest, KeyState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, ReadBuf};

/// A running service over one backend.
pub struct Env {
    pub manager: Arc<KmsServiceManager>,
    pub service: Arc<EncryptionService>,
    _guard: Box<dyn std::any::Any + Send>,
}

impl Env {
    /// Configures and starts a service manager over `registry` with `config`.
    pub async fn start(registry: BackendRegistry, mut config: KmsConfig, guard: impl std::any::Any + Send) -> Self {
        config.default_key_id = Some(unique("sse-default"));
        let manager = Arc::new(KmsServiceManager::new(registry));
        manager.configure(config).await.expect("configure");
        manager.start().await.expect("start");
        let service = manager.encryption_service().await.expect("running");
        Self { manager, service, _guard: Box::new(guard) }
    }

    async fn key(&self) -> String {
        let name = unique("sse-key");
        let request = CreateKeyRequest { key_name: Some(name), ..Default::default() };
        self.service.create_key(request).await.expect("create key").key_id
    }
}

/// A random suffix, so tests sharing a server never collide.
pub fn unique(prefix: &str) -> String {
    let mut b = [0u8; 6];
    kms_crypto::rand::fill(&mut b).unwrap();
    format!("{prefix}-{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

/// Deterministic test data: byte `i` of stream `seed`.
fn byte_at(seed: u64, i: u64) -> u8 {
    let x = (i ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0x2545_F491_4F6C_DD1D);
    (x >> 56) as u8
}

fn data(seed: u64, len: u64) -> Vec<u8> {
    (0..len).map(|i| byte_at(seed, i)).collect()
}

/// A small deterministic generator for random ranges.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 { 0 } else { self.0 % n }
    }

    fn range(&mut self, len: u64) -> Range<u64> {
        let a = self.below(len + 1);
        let b = a + self.below(len - a + 1);
        a..b
    }
}

fn customer_key(byte: u8) -> CustomerKey {
    let key = [byte; 32];
    CustomerKey::new(&key, &CustomerKey::md5_of(&key)).unwrap()
}

/// The three modes; SSE-KMS with a fresh key and a caller context.
async fn modes(env: &Env) -> Vec<(SseMode, Option<CustomerKey>)> {
    let key_id = env.key().await;
    vec![
        (SseMode::S3, None),
        (SseMode::Kms { key_id: Some(key_id), context: [("tenant".into(), "acme".into())].into() }, None),
        (SseMode::Customer(customer_key(7)), Some(customer_key(7))),
    ]
}

fn object(bucket: &str, key: &str, sse: SseMode) -> ObjectContext {
    ObjectContext { bucket: bucket.into(), object_key: key.into(), sse }
}

/// PUT: the stored bytes and the metadata (which also goes through its JSON form).
pub async fn put(service: &EncryptionService, plaintext: &[u8], object: ObjectContext) -> (Vec<u8>, ObjectMetadata) {
    let mut stream = service.encrypt_stream(plaintext, object).await.expect("encrypt_stream");
    let mut stored = Vec::new();
    stream.read_to_end(&mut stored).await.expect("encrypting read");
    let metadata = stream.finish().expect("finish");
    assert_eq!(metadata.plaintext_size, plaintext.len() as u64);
    assert_eq!(metadata.ciphertext_size, stored.len() as u64);
    (stored, ObjectMetadata::from_json(&metadata.to_json()).expect("metadata round-trips through JSON"))
}

/// GET (whole or ranged) from the stored bytes through `decrypt_seekable`.
pub async fn get(
    service: &EncryptionService,
    stored: &[u8],
    bucket: &str,
    key: &str,
    metadata: &ObjectMetadata,
    customer_key: Option<&CustomerKey>,
    range: Option<Range<u64>>,
) -> Result<Vec<u8>, KmsError> {
    let request = DecryptStreamRequest { bucket, object_key: key, metadata, customer_key, range };
    let mut stream = service.decrypt_seekable(Cursor::new(stored), request).await?;
    let expected_len = stream.plaintext_len();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.map_err(KmsError::crypto_with_source)?;
    assert_eq!(out.len() as u64, expected_len);
    Ok(out)
}

fn is_crypto(e: &KmsError) -> bool {
    matches!(e, KmsError::Crypto { .. })
}

/// Asserts that `result` failed with an error matching `kind` (a pattern), showing it if not.
macro_rules! assert_refused {
    ($result:expr, $kind:pat) => {
        assert_refused!($result, $kind, "")
    };
    ($result:expr, $kind:pat, $($context:tt)+) => {{
        match $result {
            Err(err) => assert!(matches!(err, $kind), "{err:?} {}", format!($($context)+)),
            Ok(_) => panic!("succeeded {}", format!($($context)+)),
        }
    }};
}

// ---------------------------------------------------------------------------------------------

/// Three modes × sizes 0 B .. 3 MiB × whole and random ranges.
pub async fn round_trips_every_mode_size_and_range(env: Env) {
    let sizes = [0u64, 1, 100, 65_535, 65_536, 65_537, 200_000, 3 * 1024 * 1024 + 5];
    let mut rng = Rng(0x5EED);
    for (mode, customer) in modes(&env).await {
        let kind = mode.kind();
        let context_header = matches!(&mode, SseMode::Kms { .. });
        let mut mode = Some(mode);
        for (i, &size) in sizes.iter().enumerate() {
            let sse = match (i, &customer) {
                (0, _) => mode.take().unwrap(),
                (_, Some(_)) => SseMode::Customer(customer_key(7)),
                (_, None) if kind == SseKind::S3 => SseMode::S3,
                _ => SseMode::Kms { key_id: None, context: [("tenant".into(), "acme".into())].into() },
            };
            let plaintext = data(size, size);
            let key = format!("dir/object-{size}");
            let mut stream = env.service.encrypt_stream(&plaintext[..], object("bkt", &key, sse)).await.unwrap();
            let put_headers = stream.response_headers().clone();
            let mut stored = Vec::new();
            stream.read_to_end(&mut stored).await.unwrap();
            let metadata = ObjectMetadata::from_json(&stream.finish().unwrap().to_json()).unwrap();
            assert_eq!(metadata.mode, kind);
            assert_eq!((metadata.plaintext_size, metadata.ciphertext_size), (size, stored.len() as u64));
            if size >= 32 {
                assert!(!stored.windows(plaintext.len().min(32)).any(|w| w == &plaintext[..w.len()]), "no plaintext");
            }
            match kind {
                SseKind::S3 => assert_eq!(put_headers.get(headers::SSE), Some("AES256")),
                SseKind::Kms => {
                    assert_eq!(put_headers.get(headers::SSE), Some("aws:kms"));
                    assert_eq!(put_headers.get(headers::SSE_KMS_KEY_ID), metadata.master_key_id.as_deref());
                    assert_eq!(put_headers.get(headers::SSE_CONTEXT).is_some(), context_header);
                }
                _ => {
                    assert_eq!(put_headers.get(headers::SSE_C_ALGORITHM), Some("AES256"));
                    assert_eq!(put_headers.get(headers::SSE_C_KEY_MD5), Some(customer_key(7).key_md5()));
                    assert!(!metadata.to_json().contains(customer_key(7).key_md5()), "the MD5 is not stored");
                }
            }
            let ck = customer.as_ref();
            let whole = get(&env.service, &stored, "bkt", &key, &metadata, ck, None).await.unwrap();
            assert!(whole == plaintext, "{kind} {size}: whole object");
            let mut ranges = vec![0..0, 0..size.min(1), size.saturating_sub(1)..size, 0..size];
            ranges.extend((0..6).map(|_| rng.range(size)));
            for r in ranges {
                let got = get(&env.service, &stored, "bkt", &key, &metadata, ck, Some(r.clone())).await.unwrap();
                assert!(got[..] == plaintext[r.start as usize..r.end as usize], "{kind} {size} {r:?}");
            }
        }
    }
}

/// A reader of deterministic data that never holds it in memory.
struct Generated {
    seed: u64,
    at: u64,
    len: u64,
}

impl AsyncRead for Generated {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let n = (buf.remaining() as u64).min(this.len - this.at);
        let chunk: Vec<u8> = (this.at..this.at + n).map(|i| byte_at(this.seed, i)).collect();
        buf.put_slice(&chunk);
        this.at += n;
        Poll::Ready(Ok(()))
    }
}

/// One 100 MiB SSE-KMS object: whole and three ranges, including the last byte.
pub async fn round_trips_a_100_mib_object(env: Env) {
    const SIZE: u64 = 100 * 1024 * 1024;
    let source = Generated { seed: 100, at: 0, len: SIZE };
    let key_id = env.key().await;
    let mut stream = env.service.encrypt_stream(source, object("big", "100mib", SseMode::kms(key_id))).await.unwrap();
    let mut stored = Vec::with_capacity(SIZE as usize + SIZE as usize / 1000);
    stream.read_to_end(&mut stored).await.unwrap();
    let metadata = stream.finish().unwrap();
    assert_eq!(metadata.plaintext_size, SIZE);

    let request = DecryptStreamRequest {
        bucket: "big",
        object_key: "100mib",
        metadata: &metadata,
        customer_key: None,
        range: None,
    };
    let mut reader = env.service.decrypt_seekable(Cursor::new(&stored[..]), request).await.unwrap();
    let mut at = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().enumerate().all(|(i, b)| *b == byte_at(100, at + i as u64)), "at {at}");
        at += n as u64;
    }
    assert_eq!(at, SIZE);
    for r in [0..10, SIZE / 2 - 100_000..SIZE / 2 + 100_000, SIZE - 1..SIZE] {
        let got = get(&env.service, &stored, "big", "100mib", &metadata, None, Some(r.clone())).await.unwrap();
        assert!(got.iter().enumerate().all(|(i, b)| *b == byte_at(100, r.start + i as u64)), "{r:?}");
    }
}

/// Multipart: 3 parts of unequal sizes (uploaded out of order), whole and cross-boundary reads.
pub async fn multipart_three_unequal_parts(env: Env) {
    let sizes = [5 * 1024 * 1024 + 3, 3 * 65_536 + 1, 17u64];
    for (mode, customer) in modes(&env).await {
        let kind = mode.kind();
        let ck = customer.as_ref();
        let upload = env.service.create_multipart_upload(object("mp", "video.bin", mode)).await.unwrap();
        assert!(upload.metadata.wrapped_data_key.len() > 16);
        let upload_meta = ObjectMetadata::from_json(&upload.metadata.to_json()).unwrap();
        let plaintexts: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &s)| data(i as u64 + 10, s)).collect();
        let mut stored_parts: Vec<Option<(Vec<u8>, PartInfo)>> = vec![None, None, None];
        for index in [1usize, 2, 0] {
            let request = PartRequest {
                bucket: "mp",
                object_key: "video.bin",
                upload: &upload_meta,
                part_number: index as u32 + 1,
                customer_key: ck,
            };
            let mut part = env.service.encrypt_part(&plaintexts[index][..], request).await.unwrap();
            assert_eq!(part.response_headers(), &upload.headers);
            let mut bytes = Vec::new();
            part.read_to_end(&mut bytes).await.unwrap();
            let info = part.finish().unwrap();
            assert_eq!((info.plaintext_size, info.ciphertext_size), (sizes[index], bytes.len() as u64));
            stored_parts[index] = Some((bytes, info));
        }
        let infos: Vec<PartInfo> = stored_parts.iter().map(|p| p.as_ref().unwrap().1).collect();
        let metadata = upload_meta.complete_multipart(infos).unwrap();
        let metadata = ObjectMetadata::from_json(&metadata.to_json()).unwrap();
        let stored: Vec<u8> = stored_parts.iter().flat_map(|p| p.as_ref().unwrap().0.clone()).collect();
        let plaintext: Vec<u8> = plaintexts.concat();
        assert_eq!(metadata.plaintext_size, plaintext.len() as u64);

        let whole = get(&env.service, &stored, "mp", "video.bin", &metadata, ck, None).await.unwrap();
        assert!(whole == plaintext, "{kind}: whole multipart object");
        let (b1, b2, total) = (sizes[0], sizes[0] + sizes[1], plaintext.len() as u64);
        let mut rng = Rng(kind as u64 + 3);
        let mut ranges = vec![b1 - 10..b1 + 10, b1 - 1..b2 + 1, b2 - 70_000..total, 0..total, b1..b2, total - 1..total];
        ranges.extend((0..5).map(|_| rng.range(total)));
        for r in ranges {
            let got = get(&env.service, &stored, "mp", "video.bin", &metadata, ck, Some(r.clone())).await.unwrap();
            assert!(got[..] == plaintext[r.start as usize..r.end as usize], "{kind} {r:?}");
        }

        // Parts are bound to their numbers: swapping two parts' bytes fails.
        let (p1, p2) = (&stored_parts[0].as_ref().unwrap().0, &stored_parts[1].as_ref().unwrap().0);
        let mut swapped = metadata.clone();
        let parts = swapped.parts.as_mut().unwrap();
        parts.swap(0, 1);
        parts[0].number = 1;
        parts[1].number = 2;
        let stored_swapped = [p2.clone(), p1.clone(), stored_parts[2].as_ref().unwrap().0.clone()].concat();
        assert_refused!(
            get(&env.service, &stored_swapped, "mp", "video.bin", &swapped, ck, None).await,
            KmsError::Crypto { .. }
        );
        // An open upload is not an object, and a completed object takes no more parts.
        assert_refused!(
            get(&env.service, &[], "mp", "video.bin", &upload_meta, ck, None).await,
            KmsError::InvalidRequest { .. }
        );
        let request =
            PartRequest { bucket: "mp", object_key: "video.bin", upload: &metadata, part_number: 4, customer_key: ck };
        assert_refused!(env.service.encrypt_part(&b"x"[..], request).await, KmsError::InvalidRequest { .. });
        let request = PartRequest {
            bucket: "mp",
            object_key: "video.bin",
            upload: &upload_meta,
            part_number: 0,
            customer_key: ck,
        };
        assert_refused!(env.service.encrypt_part(&b"x"[..], request).await, KmsError::InvalidRequest { .. });
    }
}

/// A source that counts what is read from it.
struct Counting<S> {
    inner: S,
    read: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.read.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        r
    }
}

impl<S: AsyncSeek + Unpin> AsyncSeek for Counting<S> {
    fn start_seek(self: Pin<&mut Self>, position: std::io::SeekFrom) -> std::io::Result<()> {
        Pin::new(&mut self.get_mut().inner).start_seek(position)
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        Pin::new(&mut self.get_mut().inner).poll_complete(cx)
    }
}

/// A ranged GET reads the header and the covering segments only, and a wrong SSE-C key
/// reads nothing at all.
pub async fn ranged_reads_fetch_only_covering_segments(env: Env) {
    let plaintext = data(9, 4 * 1024 * 1024);
    let (stored, metadata) = put(&env.service, &plaintext, object("b", "k", SseMode::S3)).await;
    let read = Arc::new(AtomicU64::new(0));
    let source = Counting { inner: Cursor::new(&stored[..]), read: Arc::clone(&read) };
    let r = 1_000_000..1_000_100;
    let request = DecryptStreamRequest {
        bucket: "b",
        object_key: "k",
        metadata: &metadata,
        customer_key: None,
        range: Some(r.clone()),
    };
    let mut out = Vec::new();
    env.service.decrypt_seekable(source, request).await.unwrap().read_to_end(&mut out).await.unwrap();
    assert_eq!(out, plaintext[r.start as usize..r.end as usize]);
    let fetched = read.load(Ordering::Relaxed);
    assert_eq!(fetched, metadata.plan(r).unwrap().fetch_len());
    assert!(fetched <= 81 + 2 * (65_536 + 16), "read {fetched} bytes for a 100-byte range");

    let (stored, metadata) = put(&env.service, &plaintext, object("b", "c", SseMode::Customer(customer_key(1)))).await;
    let read = Arc::new(AtomicU64::new(0));
    let source = Counting { inner: Cursor::new(&stored[..]), read: Arc::clone(&read) };
    let wrong = customer_key(2);
    let request = DecryptStreamRequest {
        bucket: "b",
        object_key: "c",
        metadata: &metadata,
        customer_key: Some(&wrong),
        range: None,
    };
    let err = env.service.decrypt_seekable(source, request).await.unwrap_err();
    assert!(matches!(err, KmsError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("customer key"), "a clear error: {err}");
    assert_eq!(read.load(Ordering::Relaxed), 0, "nothing read with a wrong key");
}

/// Metadata (or a whole envelope) of object A used for object B does not open.
pub async fn metadata_of_one_object_does_not_open_another(env: Env) {
    for (mode, customer) in modes(&env).await {
        let ck = customer.as_ref();
        let kind = mode.kind();
        let second = match &mode {
            SseMode::S3 => SseMode::S3,
            SseMode::Kms { key_id, context } => SseMode::Kms { key_id: key_id.clone(), context: context.clone() },
            SseMode::Customer(_) => SseMode::Customer(customer_key(7)),
            other => panic!("unexpected mode {other:?}"),
        };
        let (a_data, a_meta) = put(&env.service, b"object A", object("bkt", "a", mode)).await;
        let (b_data, b_meta) = put(&env.service, b"object B", object("bkt", "b", second)).await;
        // A's stored object and metadata copied under B's name.
        let err = get(&env.service, &a_data, "bkt", "b", &a_meta, ck, None).await.unwrap_err();
        assert!(is_crypto(&err), "{kind}: {err:?}");
        // Same name in another bucket.
        let err = get(&env.service, &a_data, "other-bkt", "a", &a_meta, ck, None).await.unwrap_err();
        assert!(is_crypto(&err), "{kind}: {err:?}");
        // A's metadata with B's data, read as B.
        let err = get(&env.service, &b_data, "bkt", "b", &a_meta, ck, None).await.unwrap_err();
        assert!(is_crypto(&err), "{kind}: {err:?}");
        // B's wrapped key spliced into A's metadata, read as A.
        let mut spliced = a_meta.clone();
        spliced.wrapped_data_key = b_meta.wrapped_data_key.clone();
        spliced.master_key_version = b_meta.master_key_version;
        spliced.customer_key_salt = b_meta.customer_key_salt.clone();
        spliced.customer_key_verifier = b_meta.customer_key_verifier.clone();
        assert_refused!(
            get(&env.service, &a_data, "bkt", "a", &spliced, ck, None).await,
            KmsError::Crypto { .. },
            "{kind}"
        );
        // And the originals still read.
        assert_eq!(get(&env.service, &a_data, "bkt", "a", &a_meta, ck, None).await.unwrap(), b"object A");
        assert_eq!(get(&env.service, &b_data, "bkt", "b", &b_meta, ck, None).await.unwrap(), b"object B");
    }
}

/// SSE-C: a wrong key, a missing key, a key for a non-SSE-C object, a bad MD5.
pub async fn sse_c_keys_are_checked(env: Env) {
    let (stored, metadata) = put(&env.service, b"secret", object("b", "c", SseMode::Customer(customer_key(3)))).await;
    let wrong = customer_key(4);
    let err = get(&env.service, &stored, "b", "c", &metadata, Some(&wrong), None).await.unwrap_err();
    assert!(matches!(err, KmsError::Unauthorized { .. }), "{err:?}");
    let err = get(&env.service, &stored, "b", "c", &metadata, None, None).await.unwrap_err();
    assert!(matches!(err, KmsError::InvalidRequest { ref field, .. } if field == headers::SSE_C_KEY), "{err:?}");
    assert_eq!(get(&env.service, &stored, "b", "c", &metadata, Some(&customer_key(3)), None).await.unwrap(), b"secret");
    assert!(!metadata.to_json().contains(&base64_of(&[3u8; 32])), "the customer key is never stored");

    let (stored, metadata) = put(&env.service, b"kms", object("b", "k", SseMode::S3)).await;
    let err = get(&env.service, &stored, "b", "k", &metadata, Some(&wrong), None).await.unwrap_err();
    assert!(matches!(err, KmsError::InvalidRequest { .. }), "{err:?}");
    assert_refused!(
        CustomerKey::new(&[3; 32], &CustomerKey::md5_of(&[4; 32])),
        KmsError::InvalidRequest { .. },
        "MD5 checked"
    );
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Every metadata field that matters, tampered, makes the read fail.
pub async fn tampered_metadata_fields_fail(env: Env) {
    let key_id = env.key().await;
    let other_key = env.key().await;
    let plaintext = data(5, 300_000);
    let kms = SseMode::Kms { key_id: Some(key_id.clone()), context: [("tenant".into(), "acme".into())].into() };
    let (stored, metadata) = put(&env.service, &plaintext, object("b", "t", kms)).await;
    type Tamper = (&'static str, fn(&mut ObjectMetadata, &str));
    let tampers: Vec<Tamper> = vec![
        ("master_key_id", |m, other| m.master_key_id = Some(other.to_owned())),
        ("master_key_version", |m, _| m.master_key_version = m.master_key_version.map(|v| v + 1)),
        ("wrapped_data_key", |m, _| {
            let at = m.wrapped_data_key.len() / 2;
            m.wrapped_data_key[at] ^= 1;
        }),
        ("context value", |m, _| {
            m.context.insert("tenant".into(), "evil".into());
        }),
        ("context entry", |m, _| {
            m.context.insert("extra".into(), "x".into());
        }),
        ("context removed", |m, _| m.context.clear()),
        ("mode", |m, _| {
            m.mode = SseKind::S3;
            m.context.clear();
        }),
        ("segment_size", |m, _| {
            m.segment_size = 32_768;
            m.ciphertext_size = kms::crypto::stream::ciphertext_len(m.plaintext_size, 32_768).unwrap();
        }),
        ("sizes shorter", |m, _| {
            m.plaintext_size -= 70_000;
            m.ciphertext_size = kms::crypto::stream::ciphertext_len(m.plaintext_size, m.segment_size).unwrap();
        }),
        ("sizes longer", |m, _| {
            m.plaintext_size += 1;
            m.ciphertext_size = kms::crypto::stream::ciphertext_len(m.plaintext_size, m.segment_size).unwrap();
        }),
        ("ciphertext_size alone", |m, _| m.ciphertext_size += 16),
        ("single part as multipart", |m, _| {
            m.parts = Some(vec![PartInfo {
                number: 1,
                plaintext_size: m.plaintext_size,
                ciphertext_size: m.ciphertext_size,
            }]);
        }),
        ("version", |m, _| m.version = 2),
        ("stream_version", |m, _| m.stream_version = 2),
        ("algorithm", |m, _| m.algorithm = "CHACHA20-POLY1305".into()),
    ];
    for (name, tamper) in tampers {
        let mut m = metadata.clone();
        tamper(&mut m, &other_key);
        let result = get(&env.service, &stored, "b", "t", &m, None, None).await;
        assert_refused!(
            result,
            KmsError::Crypto { .. } | KmsError::InvalidRequest { .. },
            "tampered {name} still decrypts"
        );
    }
    // A tampered stored object fails too (one bit in the middle).
    let mut flipped = stored.clone();
    flipped[150_000] ^= 1;
    assert_refused!(get(&env.service, &flipped, "b", "t", &metadata, None, None).await, KmsError::Crypto { .. });

    let ck = customer_key(9);
    let (stored, metadata) = put(&env.service, &plaintext, object("b", "c", SseMode::Customer(customer_key(9)))).await;
    type CTamper = (&'static str, fn(&mut ObjectMetadata));
    let tampers: Vec<CTamper> = vec![
        ("salt", |m| m.customer_key_salt.as_mut().unwrap()[0] ^= 1),
        ("verifier", |m| m.customer_key_verifier.as_mut().unwrap()[0] ^= 1),
        ("wrapped_data_key", |m| {
            let at = m.wrapped_data_key.len() / 2;
            m.wrapped_data_key[at] ^= 1;
        }),
        ("mode", |m| {
            m.mode = SseKind::S3;
        }),
    ];
    for (name, tamper) in tampers {
        let mut m = metadata.clone();
        tamper(&mut m);
        assert_refused!(
            get(&env.service, &stored, "b", "c", &m, Some(&ck), None).await,
            // A tampered salt or verifier no longer matches the key: refused as the wrong key.
            KmsError::Crypto { .. } | KmsError::InvalidRequest { .. } | KmsError::Unauthorized { .. },
            "SSE-C tampered {name}"
        );
    }
    assert_eq!(get(&env.service, &stored, "b", "c", &metadata, Some(&ck), None).await.unwrap(), plaintext);
}

/// A disabled key or one pending deletion: no PUT, no GET; back when enabled again.
pub async fn disabled_or_pending_deletion_keys_refuse_reads_and_writes(env: Env) {
    let key_id = env.key().await;
    let (stored, metadata) = put(&env.service, b"payload", object("b", "k", SseMode::kms(key_id.clone()))).await;
    let read = || get(&env.service, &stored, "b", "k", &metadata, None, None);
    let state_error = |e: KmsError, state: KeyState| {
        assert!(matches!(e, KmsError::InvalidKeyState { state: s, .. } if s == state), "{e:?}");
    };

    env.service.disable_key(KeyIdRequest { key_id: key_id.clone() }).await.unwrap();
    state_error(read().await.unwrap_err(), KeyState::Disabled);
    let err = env.service.encrypt_stream(&b"x"[..], object("b", "k2", SseMode::kms(key_id.clone()))).await.unwrap_err();
    state_error(err, KeyState::Disabled);
    env.service.enable_key(KeyIdRequest { key_id: key_id.clone() }).await.unwrap();
    assert_eq!(read().await.unwrap(), b"payload");

    env.service.delete_key(DeleteKeyRequest { key_id: key_id.clone(), pending_window_in_days: Some(7) }).await.unwrap();
    state_error(read().await.unwrap_err(), KeyState::PendingDeletion);
    let err = env.service.encrypt_stream(&b"x"[..], object("b", "k2", SseMode::kms(key_id.clone()))).await.unwrap_err();
    state_error(err, KeyState::PendingDeletion);
    let err = env
        .service
        .rewrap(RewrapRequest { bucket: "b", object_key: "k", metadata: &metadata, destination_key_id: None })
        .await
        .unwrap_err();
    state_error(err, KeyState::PendingDeletion);
    env.service.cancel_key_deletion(kms::types::CancelKeyDeletionRequest { key_id: key_id.clone() }).await.unwrap();
    env.service.enable_key(KeyIdRequest { key_id }).await.unwrap();
    assert_eq!(read().await.unwrap(), b"payload");
}

/// Rotate, rewrap: old and new metadata both read the same, untouched data; rewrap to
/// another key; the bulk rewrap reports, survives failures and resumes.
pub async fn rotate_then_rewrap(env: Env) {
    let key_id = env.key().await;
    let plaintext = data(77, 150_000);
    let (stored, old) = put(&env.service, &plaintext, object("b", "r", SseMode::kms(key_id.clone()))).await;
    assert_eq!(old.master_key_version, Some(1));
    env.service.rotate_key(KeyIdRequest { key_id: key_id.clone() }).await.unwrap();
    let new = env
        .service
        .rewrap(RewrapRequest { bucket: "b", object_key: "r", metadata: &old, destination_key_id: None })
        .await
        .unwrap();
    assert_eq!((new.master_key_id.as_deref(), new.master_key_version), (Some(key_id.as_str()), Some(2)));
    assert_ne!(new.wrapped_data_key, old.wrapped_data_key);
    assert_eq!(
        (new.plaintext_size, new.ciphertext_size, &new.context),
        (old.plaintext_size, old.ciphertext_size, &old.context)
    );
    for m in [&old, &new] {
        assert_eq!(get(&env.service, &stored, "b", "r", m, None, None).await.unwrap(), plaintext);
        assert_eq!(
            get(&env.service, &stored, "b", "r", m, None, Some(70_000..70_010)).await.unwrap(),
            plaintext[70_000..70_010]
        );
    }
    // New metadata with the old version number, and the rewrap of metadata for another object, fail.
    let mut lying = new.clone();
    lying.master_key_version = Some(1);
    assert_refused!(get(&env.service, &stored, "b", "r", &lying, None, None).await, KmsError::Crypto { .. });
    let moved = RewrapRequest { bucket: "b", object_key: "other", metadata: &old, destination_key_id: None };
    assert!(is_crypto(&env.service.rewrap(moved).await.unwrap_err()));

    // To another key.
    let other = env.key().await;
    let elsewhere = env
        .service
        .rewrap(RewrapRequest { bucket: "b", object_key: "r", metadata: &new, destination_key_id: Some(&other) })
        .await
        .unwrap();
    assert_eq!(elsewhere.master_key_id.as_deref(), Some(other.as_str()));
    assert_eq!(get(&env.service, &stored, "b", "r", &elsewhere, None, None).await.unwrap(), plaintext);

    // Bulk: 6 records: 4 at v1, one already at v2, one SSE-C, one broken.
    let mut records = Vec::new();
    let mut stores = std::collections::HashMap::new();
    for i in 0..4 {
        let name = format!("obj-{i}");
        let body = data(i, 1000 + i);
        let (bytes, m) = put(&env.service, &body, object("bulk", &name, SseMode::kms(key_id.clone()))).await;
        stores.insert(name.clone(), (bytes, body));
        records.push(RewrapRecord { id: name.clone(), bucket: "bulk".into(), object_key: name, metadata: m });
    }
    // The key rotated after those four were written: they are at v2 now; rotate once more.
    env.service.rotate_key(KeyIdRequest { key_id: key_id.clone() }).await.unwrap();
    let (_, current) = put(&env.service, b"fresh", object("bulk", "current", SseMode::kms(key_id.clone()))).await;
    assert_eq!(current.master_key_version, Some(3));
    records.insert(
        2,
        RewrapRecord { id: "current".into(), bucket: "bulk".into(), object_key: "current".into(), metadata: current },
    );
    let (_, sse_c) = put(&env.service, b"c", object("bulk", "sse-c", SseMode::Customer(customer_key(1)))).await;
    records.push(RewrapRecord {
        id: "sse-c".into(),
        bucket: "bulk".into(),
        object_key: "sse-c".into(),
        metadata: sse_c,
    });
    let mut broken = records[0].metadata.clone();
    let last = broken.wrapped_data_key.len() - 1;
    broken.wrapped_data_key[last] ^= 1;
    records.push(RewrapRecord {
        id: "broken".into(),
        bucket: "bulk".into(),
        object_key: "obj-0".into(),
        metadata: broken,
    });

    // First run: stop (as if the process died) after the second record.
    let mut seen = Vec::new();
    let progress = env
        .service
        .rewrap_all(records.clone(), &RewrapOptions::default(), |record, outcome, _| {
            seen.push(record.id.clone());
            assert!(matches!(outcome, RewrapOutcome::Rewrapped(_)), "{outcome:?}");
            if seen.len() == 2 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })
        .await;
    assert!(progress.stopped_early);
    assert_eq!(progress.checkpoint.as_deref(), Some("obj-0"), "the refused record is not checkpointed");
    assert_eq!(progress.rewrapped, 2);

    // Resume after the checkpoint.
    let options = RewrapOptions { resume_after: progress.checkpoint.clone(), ..Default::default() };
    let mut rewrapped = Vec::new();
    let mut failures = Vec::new();
    let progress = env
        .service
        .rewrap_all(records.clone(), &options, |record, outcome, progress| {
            assert!(progress.handled() >= 1);
            match outcome {
                RewrapOutcome::Rewrapped(m) => rewrapped.push((record.object_key.clone(), m)),
                RewrapOutcome::Failed(e) => failures.push((record.id.clone(), e)),
                _ => {}
            }
            ControlFlow::Continue(())
        })
        .await;
    assert_eq!(progress.skipped, 1);
    assert_eq!(
        (progress.rewrapped, progress.already_current, progress.not_applicable, progress.failed),
        (3, 1, 1, 1),
        "{progress:?}"
    );
    assert_eq!(progress.failed_ids, vec!["broken".to_owned()]);
    assert_eq!(failures.len(), 1);
    assert!(!failures[0].1.is_retryable(), "{:?}", failures[0].1);
    assert_eq!(progress.checkpoint.as_deref(), Some("broken"));
    assert!(!progress.stopped_early);
    assert!(!progress.checkpoint_not_found);

    // A checkpoint that no longer exists is reported, not mistaken for "all done".
    let options = RewrapOptions { resume_after: Some("deleted-since".into()), ..Default::default() };
    let lost = env.service.rewrap_all(records.clone(), &options, |_, _, _| ControlFlow::Continue(())).await;
    assert!(lost.checkpoint_not_found, "{lost:?}");
    assert_eq!((lost.handled(), lost.skipped), (0, records.len() as u64));
    for (name, m) in &rewrapped {
        assert_eq!(m.master_key_version, Some(3));
        let (bytes, body) = &stores[name];
        assert_eq!(&get(&env.service, bytes, "bulk", name, m, None, None).await.unwrap(), body);
    }

    // max_failures stops a run.
    let options = RewrapOptions { max_failures: Some(1), ..Default::default() };
    let only_broken = vec![records.last().unwrap().clone(), records[0].clone()];
    let progress = env.service.rewrap_all(only_broken, &options, |_, _, _| ControlFlow::Continue(())).await;
    assert!(progress.stopped_early);
    assert_eq!((progress.failed, progress.rewrapped), (1, 0));
}

/// The KMS stopped: by default nothing decrypts; with the opt-in cache, recently used keys
/// serve reads for at most the TTL; SSE-C never needs the KMS; new writes need it.
pub async fn kms_stopped(env: Env) {
    let key_id = env.key().await;
    let (stored, metadata) = put(&env.service, b"needs the kms", object("b", "k", SseMode::kms(key_id.clone()))).await;
    let (c_stored, c_meta) = put(&env.service, b"sse-c", object("b", "c", SseMode::Customer(customer_key(5)))).await;
    let read = || get(&env.service, &stored, "b", "k", &metadata, None, None);
    let ck = customer_key(5);

    assert_eq!(env.service.kms_unavailable_policy(), KmsUnavailablePolicy::FailClosed);
    assert_eq!(env.service.cached_data_keys(), 0, "nothing cached by default");
    env.manager.stop().await.unwrap();
    let err = read().await.unwrap_err();
    assert!(matches!(err, KmsError::ServiceUnavailable { .. }), "{err:?}");
    assert_eq!(get(&env.service, &c_stored, "b", "c", &c_meta, Some(&ck), None).await.unwrap(), b"sse-c");

    // Opt in, warm the cache, stop again.
    env.manager.start().await.unwrap();
    let config = DataKeyCacheConfig { ttl: Duration::from_secs(2), max_entries: 16 };
    env.service.set_kms_unavailable_policy(KmsUnavailablePolicy::CacheDataKeys(config)).unwrap();
    assert_eq!(read().await.unwrap(), b"needs the kms");
    let (written, written_meta) = put(&env.service, b"written before", object("b", "w", SseMode::S3)).await;
    assert_eq!(env.service.cached_data_keys(), 2);
    env.manager.stop().await.unwrap();
    assert_eq!(read().await.unwrap(), b"needs the kms", "served from the cache");
    assert_eq!(get(&env.service, &written, "b", "w", &written_meta, None, None).await.unwrap(), b"written before");
    let err = env.service.encrypt_stream(&b"x"[..], object("b", "n", SseMode::kms(key_id.clone()))).await.unwrap_err();
    assert!(matches!(err, KmsError::ServiceUnavailable { .. }), "no new data keys: {err:?}");
    // The cache serves only this exact object: another object name does not open.
    assert_refused!(
        get(&env.service, &stored, "b", "elsewhere", &metadata, None, None).await,
        KmsError::ServiceUnavailable { .. }
    );
    // Bounded TTL.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert!(matches!(read().await.unwrap_err(), KmsError::ServiceUnavailable { .. }), "expired");
    // Flushing empties it at once.
    env.manager.start().await.unwrap();
    assert_eq!(read().await.unwrap(), b"needs the kms");
    env.manager.stop().await.unwrap();
    env.service.flush_data_key_cache();
    assert_refused!(read().await, KmsError::ServiceUnavailable { .. });
    // While the KMS answers, it decides: a disabled key is refused even with a warm cache.
    env.manager.start().await.unwrap();
    assert_eq!(read().await.unwrap(), b"needs the kms");
    env.service.disable_key(KeyIdRequest { key_id }).await.unwrap();
    assert!(matches!(read().await.unwrap_err(), KmsError::InvalidKeyState { .. }));
    // The KMS said no: its refusal outlives a later outage (the cached key is dropped).
    env.manager.stop().await.unwrap();
    let err = read().await.unwrap_err();
    assert!(matches!(err, KmsError::ServiceUnavailable { .. }), "a refused key is not served from the cache: {err:?}");
}

/// Caller contexts may not use the reserved names; SSE-S3 without a default key is refused.
pub async fn requests_are_validated(env: Env) {
    let reserved: EncryptionContext = [("kms:bucket".into(), "x".into())].into();
    let err = env
        .service
        .encrypt_stream(&b"x"[..], object("b", "k", SseMode::Kms { key_id: None, context: reserved }))
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::InvalidRequest { .. }), "{err:?}");
    let err = env.service.encrypt_stream(&b"x"[..], object("", "k", SseMode::S3)).await.unwrap_err();
    assert!(matches!(err, KmsError::InvalidRequest { .. }), "{err:?}");
    let err = env.service.encrypt_stream(&b"x"[..], object("b", "k", SseMode::kms("no-such-key"))).await.unwrap_err();
    assert!(matches!(err, KmsError::KeyNotFound { .. }), "{err:?}");
    // A stream not read to its end has no metadata.
    let stream = env.service.encrypt_stream(&b"abc"[..], object("b", "k", SseMode::S3)).await.unwrap();
    assert_refused!(stream.finish(), KmsError::InvalidRequest { .. });
}

/// Expands to one `#[tokio::test]` per suite case, each with a fresh `$env().await`.
macro_rules! sse_suite {
    ($env:path) => {
        $crate::sse_suite::sse_suite!(@cases $env;
            round_trips_every_mode_size_and_range,
            round_trips_a_100_mib_object,
            multipart_three_unequal_parts,
            ranged_reads_fetch_only_covering_segments,
            metadata_of_one_object_does_not_open_another,
            sse_c_keys_are_checked,
            tampered_metadata_fields_fail,
            disabled_or_pending_deletion_keys_refuse_reads_and_writes,
            rotate_then_rewrap,
            kms_stopped,
            requests_are_validated,
        );
    };
    (@cases $env:path; $($case:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                sse_suite::$case($env().await).await;
            }
        )*
    };
}
pub(crate) use sse_suite;
