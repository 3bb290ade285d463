//! `kms encrypt` / `kms decrypt`: envelope encryption of files and pipes.
//!
//! The server makes a fresh data key (`generate-data-key`, bound to the encryption context);
//! the data is encrypted locally with the `kms-crypto` streaming format; the wrapped data key
//! is stored in front of it. Decryption sends the wrapped key back (`decrypt`), so every file
//! needs the server and a token allowed to decrypt under its master key.
//!
//! File format, version 1 (`docs/formats.md`, "kms file envelope"):
//!
//! ```text
//! 0      4  magic "KMSF"
//! 4      1  version 0x01
//! 5      4  W = length of the wrapped data key, u32 BE, 1..=65536
//! 9      W  the wrapped data key, as the server returned it (names its master key)
//! 9+W       a kms-crypto stream, version 1, single part
//! ```

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::Method;
use indicatif::{ProgressBar, ProgressStyle};
use kms::admin::api::DataKeyBody;
use kms::crypto::keys::PlaintextDataKey;
use kms::crypto::stream::{DecryptingReader, EncryptingWriter, HEADER_LEN, ObjectLayout, Part, StreamParams};
use kms::secret::SecretString;
use kms::types::{DecryptRequest, EncryptionContext, KeySpec};
use zeroize::Zeroizing;

use crate::cli::{DecryptArgs, EncryptArgs};
use crate::client::{CliError, Client};
use crate::pairs::pairs;

/// The file magic.
pub(crate) const MAGIC: [u8; 4] = *b"KMSF";
/// The file format version.
pub(crate) const VERSION: u8 = 1;
/// Largest wrapped data key accepted in a header.
pub(crate) const MAX_WRAPPED_LEN: u32 = 65536;
/// Inputs at least this large get a progress bar (on a terminal).
const PROGRESS_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Copy buffer.
const CHUNK: usize = 1024 * 1024;

fn io_error(what: &str, path: Option<&Path>, e: io::Error) -> CliError {
    match path {
        Some(p) => CliError::local(format!("{what} {}: {e}", p.display())),
        None => CliError::local(format!("{what}: {e}")),
    }
}

/// The output. A file is written to a private (0600) temporary file beside it, which replaces
/// it only when the command succeeds ([`Output::commit`]): an existing file (even the input
/// itself) is left as it was by a failure, and the input is never truncated before it is read.
struct Output {
    /// The file asked for, and the temporary file that becomes it.
    target: Option<(PathBuf, PathBuf)>,
    done: bool,
}

impl Output {
    fn open(path: Option<&Path>) -> Result<(Self, Box<dyn Write>), CliError> {
        match path {
            Some(p) => {
                let name = p.file_name().ok_or_else(|| CliError::usage(format!("{}: not a file name", p.display())))?;
                let tmp = p.with_file_name(format!(".{}.{}.kms.tmp", name.to_string_lossy(), std::process::id()));
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let file = options.open(&tmp).map_err(|e| io_error("cannot create", Some(&tmp), e))?;
                let writer = Box::new(BufWriter::with_capacity(CHUNK, file));
                Ok((Self { target: Some((p.to_owned(), tmp)), done: false }, writer))
            }
            None => {
                Ok((Self { target: None, done: false }, Box::new(BufWriter::with_capacity(CHUNK, io::stdout().lock()))))
            }
        }
    }

    /// Puts the complete (flushed) output in place.
    fn commit(&mut self) -> Result<(), CliError> {
        if let Some((path, tmp)) = &self.target {
            std::fs::rename(tmp, path).map_err(|e| io_error("cannot create", Some(path), e))?;
        }
        self.done = true;
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let (false, Some((_, tmp))) = (self.done, &self.target) {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

fn progress(len: Option<u64>, quiet: bool) -> ProgressBar {
    match len {
        Some(len) if !quiet && len >= PROGRESS_THRESHOLD && io::stderr().is_terminal() => {
            let bar = ProgressBar::new(len);
            if let Ok(style) =
                ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
            {
                bar.set_style(style);
            }
            bar
        }
        _ => ProgressBar::hidden(),
    }
}

/// A `generate-data-key` answer; the plaintext key is only ever held in zeroizing types.
#[derive(Debug, serde::Deserialize)]
struct DataKeyAnswer {
    plaintext_key: SecretString,
    #[serde(with = "kms::serde_helpers::base64_bytes")]
    ciphertext_blob: Vec<u8>,
}

/// A `decrypt` answer.
#[derive(Debug, serde::Deserialize)]
struct DecryptAnswer {
    plaintext: SecretString,
}

fn data_key_from(encoded: &SecretString) -> Result<PlaintextDataKey, CliError> {
    let bytes = Zeroizing::new(
        STANDARD
            .decode(encoded.expose_secret())
            .map_err(|_| CliError::new(crate::client::exit::SERVER, "the answer's key is not base64"))?,
    );
    PlaintextDataKey::from_bytes(&bytes)
        .map_err(|_| CliError::new(crate::client::exit::SERVER, "the answer's key has a bad size"))
}

/// `kms encrypt`.
pub(crate) async fn encrypt(client: &Client, args: EncryptArgs) -> Result<(), CliError> {
    kms::admin::aliases::check_key_ref("--key", &args.key).map_err(|e| CliError::usage(e.message))?;
    let context: EncryptionContext = pairs("--context", &args.context)?;
    let body = DataKeyBody { key_spec: KeySpec::Aes256, encryption_context: context.clone() };
    let answer: DataKeyAnswer = client
        .call_secret(
            Method::POST,
            &format!("/kms/v1/keys/{}/generate-data-key", crate::commands::segment(&args.key)?),
            Some(&body),
        )
        .await?;
    let data_key = data_key_from(&answer.plaintext_key)?;
    let wrapped = answer.ciphertext_blob;
    if wrapped.is_empty() || wrapped.len() > MAX_WRAPPED_LEN as usize {
        return Err(CliError::new(crate::client::exit::SERVER, "the wrapped key has an unexpected size"));
    }
    tokio::task::spawn_blocking(move || encrypt_blocking(args, data_key, &context, &wrapped))
        .await
        .map_err(|e| CliError::local(format!("encryption task: {e}")))?
}

fn encrypt_blocking(
    args: EncryptArgs,
    data_key: PlaintextDataKey,
    context: &EncryptionContext,
    wrapped: &[u8],
) -> Result<(), CliError> {
    let (input, len): (Box<dyn Read>, Option<u64>) = match &args.input {
        Some(p) => {
            let file = File::open(p).map_err(|e| io_error("cannot open", Some(p), e))?;
            let len = file.metadata().ok().map(|m| m.len());
            (Box::new(file), len)
        }
        None => (Box::new(io::stdin().lock()), None),
    };
    let (mut guard, mut out) = Output::open(args.output.as_deref())?;
    let write_err = |e| io_error("cannot write", args.output.as_deref(), e);
    out.write_all(&MAGIC).map_err(write_err)?;
    out.write_all(&[VERSION]).map_err(write_err)?;
    out.write_all(&(wrapped.len() as u32).to_be_bytes()).map_err(write_err)?;
    out.write_all(wrapped).map_err(write_err)?;
    let mut writer = EncryptingWriter::new(out, &data_key, context, Part::Whole, StreamParams::default())
        .map_err(|e| CliError::local(format!("cannot start the stream: {e}")))?;
    let bar = progress(len, args.quiet);
    let mut reader = bar.wrap_read(input);
    copy(&mut reader, &mut writer, |e| io_error("cannot read", args.input.as_deref(), e), args.output.as_deref())?;
    let mut out = writer.finish().map_err(write_err)?;
    out.flush().map_err(write_err)?;
    bar.finish_and_clear();
    guard.commit()?;
    Ok(())
}

/// Reads the file header: the wrapped data key.
pub(crate) fn read_header(input: &mut dyn Read) -> Result<Vec<u8>, CliError> {
    let bad = || CliError::local("the input is not a kms-encrypted file (kms encrypt makes them)");
    let mut head = [0u8; 9];
    input.read_exact(&mut head).map_err(|_| bad())?;
    if head[..4] != MAGIC {
        return Err(bad());
    }
    if head[4] != VERSION {
        return Err(CliError::local(format!("unsupported kms file version {} (this build reads {VERSION})", head[4])));
    }
    let len = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
    if len == 0 || len > MAX_WRAPPED_LEN {
        return Err(bad());
    }
    let mut wrapped = vec![0u8; len as usize];
    input.read_exact(&mut wrapped).map_err(|_| bad())?;
    Ok(wrapped)
}

/// Parses `START-END` (END exclusive) or `START-`.
pub(crate) fn parse_range(text: &str) -> Result<(u64, Option<u64>), CliError> {
    let bad = || CliError::usage(format!("--range {text}: expected START-END (END exclusive) or START-"));
    let (start, end) = text.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end = match end.trim() {
        "" => None,
        e => Some(e.parse::<u64>().map_err(|_| bad())?),
    };
    if end.is_some_and(|e| e < start) {
        return Err(bad());
    }
    Ok((start, end))
}

/// `kms decrypt`.
pub(crate) async fn decrypt(client: &Client, args: DecryptArgs) -> Result<(), CliError> {
    let context: EncryptionContext = pairs("--context", &args.context)?;
    let range = args.range.as_deref().map(parse_range).transpose()?;
    if range.is_some() && args.input.is_none() {
        return Err(CliError::usage("--range needs --input FILE (a seekable file, not stdin)"));
    }
    let mut input: Box<dyn Read + Send> = match &args.input {
        Some(p) => {
            Box::new(BufReader::with_capacity(CHUNK, File::open(p).map_err(|e| io_error("cannot open", Some(p), e))?))
        }
        None => Box::new(io::stdin()),
    };
    let wrapped = tokio::task::block_in_place(|| read_header(&mut input))?;
    let request =
        DecryptRequest { ciphertext_blob: wrapped.clone(), encryption_context: context.clone(), key_id: None };
    let answer: DecryptAnswer = client.call_secret(Method::POST, "/kms/v1/decrypt", Some(&request)).await?;
    let data_key = data_key_from(&answer.plaintext)?;
    let stream_offset = 9 + wrapped.len() as u64;
    tokio::task::spawn_blocking(move || match range {
        None => decrypt_all(input, &args, &data_key, &context),
        Some((start, end)) => {
            drop(input);
            let path = args.input.clone().expect("checked above");
            decrypt_range(&path, stream_offset, start, end, &args, &data_key, &context)
        }
    })
    .await
    .map_err(|e| CliError::local(format!("decryption task: {e}")))?
}

fn decrypt_all(
    input: Box<dyn Read + Send>,
    args: &DecryptArgs,
    data_key: &PlaintextDataKey,
    context: &EncryptionContext,
) -> Result<(), CliError> {
    let len = args.input.as_ref().and_then(|p| std::fs::metadata(p).ok()).map(|m| m.len());
    let (mut guard, mut out) = Output::open(args.output.as_deref())?;
    let bar = progress(len, args.quiet);
    let mut reader = DecryptingReader::new(bar.wrap_read(input), data_key, context, Part::Whole);
    copy(&mut reader, &mut out, not_decryptable, args.output.as_deref())?;
    bar.finish_and_clear();
    guard.commit()?;
    Ok(())
}

/// The error of a stream that does not authenticate (deliberately without detail).
fn not_decryptable(_: io::Error) -> CliError {
    CliError::local("the file does not decrypt: wrong encryption context, or it was modified or truncated")
}

/// Copies `reader` to `out` through a zeroized buffer, mapping read failures with `on_read`.
fn copy(
    reader: &mut dyn Read,
    out: &mut dyn Write,
    on_read: impl Fn(io::Error) -> CliError,
    output: Option<&Path>,
) -> Result<(), CliError> {
    let mut buf = Zeroizing::new(vec![0u8; CHUNK]);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(on_read(e)),
        };
        out.write_all(&buf[..n]).map_err(|e| io_error("cannot write", output, e))?;
    }
    out.flush().map_err(|e| io_error("cannot write", output, e))
}

fn decrypt_range(
    path: &Path,
    stream_offset: u64,
    start: u64,
    end: Option<u64>,
    args: &DecryptArgs,
    data_key: &PlaintextDataKey,
    context: &EncryptionContext,
) -> Result<(), CliError> {
    let open = || File::open(path).map_err(|e| io_error("cannot open", Some(path), e));
    let mut file = open()?;
    let file_len = file.metadata().map_err(|e| io_error("cannot read", Some(path), e))?.len();
    let stream_len = file_len.checked_sub(stream_offset).filter(|l| *l >= HEADER_LEN as u64);
    let stream_len = stream_len.ok_or_else(|| CliError::local("the file is truncated"))?;
    // The segment size is in the stream header (offset 6, u32 BE); the commitment check in the
    // decryption authenticates it.
    let mut header = [0u8; 10];
    file.seek(SeekFrom::Start(stream_offset))
        .and_then(|_| file.read_exact(&mut header))
        .map_err(|e| io_error("cannot read", Some(path), e))?;
    let segment_size = u32::from_be_bytes([header[6], header[7], header[8], header[9]]);
    let plaintext_len = kms::crypto::stream::plaintext_len(stream_len, segment_size)
        .map_err(|_| CliError::local("the file is truncated or not a kms stream"))?;
    let end = end.unwrap_or(plaintext_len).min(plaintext_len);
    if start > end {
        return Err(CliError::usage(format!("--range: the plaintext is {plaintext_len} bytes long")));
    }
    let layout = ObjectLayout::single(segment_size, plaintext_len).map_err(|e| CliError::local(e.to_string()))?;
    let plan = layout.plan(start..end).map_err(|e| CliError::usage(format!("--range: {e}")))?;
    // Chain the pieces the plan needs, each read straight from its place in the file.
    let mut pieces: Box<dyn Read> = Box::new(io::empty());
    for Range { start: from, end: to } in plan.fetch_ranges() {
        let mut f = open()?;
        f.seek(SeekFrom::Start(stream_offset + from)).map_err(|e| io_error("cannot read", Some(path), e))?;
        pieces = Box::new(pieces.chain(BufReader::with_capacity(CHUNK, f).take(to - from)));
    }
    let (mut guard, mut out) = Output::open(args.output.as_deref())?;
    let bar = progress(Some(plan.fetch_len()), args.quiet);
    let mut reader = DecryptingReader::range(bar.wrap_read(pieces), data_key, context, &plan);
    copy(&mut reader, &mut out, not_decryptable, args.output.as_deref())?;
    bar.finish_and_clear();
    guard.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_with_key_material_hold_it_only_in_secret_types() {
        let key = STANDARD.encode([0x42u8; 32]);
        let json = format!(r#"{{"plaintext_key":"{key}","ciphertext_blob":"AAEC","key_id":"k"}}"#);
        let answer: DataKeyAnswer = serde_json::from_str(&json).unwrap();
        assert!(!format!("{answer:?}").contains(&key), "the key shows in Debug output");
        assert_eq!(answer.ciphertext_blob, [0, 1, 2]);
        assert_eq!(data_key_from(&answer.plaintext_key).unwrap().key_spec(), KeySpec::Aes256);
        let answer: DecryptAnswer = serde_json::from_str(&format!(r#"{{"plaintext":"{key}","key_id":"k"}}"#)).unwrap();
        assert!(!format!("{answer:?}").contains(&key));
        let short = SecretString::from(STANDARD.encode([1u8; 5]).as_str());
        assert_eq!(data_key_from(&short).unwrap_err().code, crate::client::exit::SERVER);
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("0-10").unwrap(), (0, Some(10)));
        assert_eq!(parse_range("5-").unwrap(), (5, None));
        for bad in ["10-5", "x-5", "5"] {
            let err = parse_range(bad).unwrap_err();
            assert_eq!(err.code, crate::client::exit::USAGE, "{bad}");
            assert!(err.message.contains(&format!("--range {bad}")), "{}", err.message);
        }
    }

    #[test]
    fn headers_round_trip_and_garbage_is_refused() {
        let mut file = Vec::new();
        file.extend_from_slice(&MAGIC);
        file.push(VERSION);
        file.extend_from_slice(&3u32.to_be_bytes());
        file.extend_from_slice(b"abc");
        assert_eq!(read_header(&mut &file[..]).unwrap(), b"abc");
        let not_ours = "not a kms-encrypted file";
        for (bad, why) in [
            (&b"KMSX\x01\0\0\0\x01a"[..], not_ours),
            (b"KMSF\x02\0\0\0\x01a", "unsupported kms file version 2"),
            (b"KMSF\x01\0\0\0\0", not_ours),
            (b"KMSF\x01\xff\xff\xff\xffa", not_ours),
            (b"KM", not_ours),
        ] {
            let err = read_header(&mut &bad[..]).unwrap_err();
            assert_eq!(err.code, crate::client::exit::FAILED, "{bad:?}");
            assert!(err.message.contains(why), "{bad:?}: {}", err.message);
        }
    }
}
