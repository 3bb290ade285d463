//! `kms rewrap`: moves files made by `kms encrypt` to a rotated (or another) master key without
//! touching their data.
//!
//! A file's header holds its data key wrapped by the server (`docs/formats.md`, "kms file
//! envelope"); the data behind it is encrypted under the data key itself. Rewrapping sends the
//! wrapped key to `POST /kms/v1/re-encrypt` and writes the answer in its place: the data key,
//! and so every encrypted byte after the header, stays the same. Each file is rewritten to a
//! private temporary file beside it (same mode), synced, then renamed over the original, so at
//! every moment the file is either the old one or the new one, and both decrypt.
//!
//! Files are taken in a stable order (sorted paths, folders walked recursively). The first
//! failure stops the run, like an interruption; a journal (one finished path per line) lets
//! `--resume` skip what is done. A run that completes removes its journal.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use http::Method;
use indicatif::{ProgressBar, ProgressStyle};
use kms::types::{EncryptionContext, ReEncryptRequest, ReEncryptResponse};
use serde::Serialize;

use crate::cli::{GlobalArgs, RewrapArgs};
use crate::client::{CliError, Client};
use crate::files::{MAGIC, VERSION, read_header};
use crate::pairs::pairs;

/// The journal's default name, in the current folder.
pub(crate) const DEFAULT_JOURNAL: &str = ".kms-rewrap.journal";

/// What happened to one file (one `--json` line).
#[derive(Debug, Serialize)]
struct FileReport {
    path: String,
    /// `rewrapped`, `current` (already under the target key version), `done_before` (journal),
    /// `not_kms` (a file in a folder that `kms encrypt` did not make), `failed`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<KeyRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<KeyRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct KeyRef {
    key_id: String,
    version: u32,
}

/// Counts for the summary.
#[derive(Debug, Default)]
struct Summary {
    rewrapped: usize,
    current: usize,
    done_before: usize,
    not_kms: usize,
}

/// Runs `kms rewrap`.
pub(crate) async fn run(client: &Client, global: &GlobalArgs, args: RewrapArgs) -> Result<(), CliError> {
    if let Some(key) = &args.to_key {
        kms::types::validate_key_id("--to-key", key).map_err(|e| CliError::usage(e.to_string()))?;
    }
    let context: EncryptionContext = pairs("--context", &args.context)?;
    let journal_path = args.journal.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_JOURNAL));
    let files = collect(&args.paths, &journal_path)?;
    let done = if args.resume {
        remove_leftovers(&files);
        read_journal(&journal_path)?
    } else {
        BTreeSet::new()
    };
    let mut journal = open_journal(&journal_path, args.resume)?;

    let bar = progress(files.len() as u64, args.quiet || global.json);
    let mut summary = Summary::default();
    for (path, explicit) in &files {
        bar.set_message(path.display().to_string());
        let shown = path.display().to_string();
        let report = if done.contains(&shown) {
            summary.done_before += 1;
            FileReport { path: shown, status: "done_before", from: None, to: None, error: None }
        } else {
            match rewrap_file(client, path, &context, args.to_key.as_deref()).await {
                Ok(Outcome::NotKms) if !explicit => {
                    summary.not_kms += 1;
                    FileReport { path: shown, status: "not_kms", from: None, to: None, error: None }
                }
                Ok(Outcome::NotKms) => {
                    let err = CliError::local(format!("{shown}: not a kms-encrypted file (kms encrypt makes them)"));
                    return Err(stop(global, &bar, &summary, shown, err));
                }
                Ok(Outcome::Done { rewrapped, answer }) => {
                    if rewrapped {
                        summary.rewrapped += 1
                    } else {
                        summary.current += 1
                    }
                    writeln!(journal, "{shown}")
                        .and_then(|()| journal.flush())
                        .map_err(|e| CliError::local(format!("journal {}: {e}", journal_path.display())))?;
                    FileReport {
                        path: shown,
                        status: if rewrapped { "rewrapped" } else { "current" },
                        from: Some(KeyRef { key_id: answer.source_key_id, version: answer.source_key_version }),
                        to: Some(KeyRef { key_id: answer.key_id, version: answer.key_version }),
                        error: None,
                    }
                }
                Err(err) => return Err(stop(global, &bar, &summary, shown, err)),
            }
        };
        if global.json {
            bar.suspend(|| println!("{}", serde_json::to_string(&report).expect("reports serialize")));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    drop(journal);
    fs::remove_file(&journal_path)
        .or_else(|e| if e.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
        .map_err(|e| CliError::local(format!("journal {}: {e}", journal_path.display())))?;
    eprintln!("kms: {}", describe(&summary));
    Ok(())
}

/// Ends a run at its first failure: the failed file's line, the summary so far, and how to go on.
fn stop(global: &GlobalArgs, bar: &ProgressBar, summary: &Summary, path: String, err: CliError) -> CliError {
    bar.finish_and_clear();
    if global.json {
        let report =
            FileReport { path: path.clone(), status: "failed", from: None, to: None, error: Some(err.message.clone()) };
        println!("{}", serde_json::to_string(&report).expect("reports serialize"));
    }
    eprintln!("kms: stopped; {}", describe(summary));
    CliError::new(err.code, format!("{path}: {}\n  fix it, then run the same command with --resume", err.message))
}

fn describe(s: &Summary) -> String {
    format!(
        "{} rewrapped, {} already current, {} done by an earlier run, {} not kms files",
        s.rewrapped, s.current, s.done_before, s.not_kms
    )
}

enum Outcome {
    NotKms,
    Done { rewrapped: bool, answer: ReEncryptResponse },
}

async fn rewrap_file(
    client: &Client,
    path: &Path,
    context: &EncryptionContext,
    to_key: Option<&str>,
) -> Result<Outcome, CliError> {
    let open_err = |e: io::Error| CliError::local(format!("cannot read: {e}"));
    let mut file = File::open(path).map_err(open_err)?;
    let mut magic = [0u8; 4];
    if file.read_exact(&mut magic).is_err() || magic != MAGIC {
        return Ok(Outcome::NotKms);
    }
    file.seek(SeekFrom::Start(0)).map_err(open_err)?;
    let wrapped = read_header(&mut file)?;
    let request = ReEncryptRequest {
        ciphertext_blob: wrapped.clone(),
        source_encryption_context: context.clone(),
        destination_key_id: to_key.map(str::to_owned),
        destination_encryption_context: None,
    };
    let answer: ReEncryptResponse = client.call(Method::POST, "/kms/v1/re-encrypt", Some(&request)).await?;
    if answer.key_id == answer.source_key_id && answer.key_version == answer.source_key_version {
        return Ok(Outcome::Done { rewrapped: false, answer });
    }
    let new_len = u32::try_from(answer.ciphertext_blob.len())
        .ok()
        .filter(|len| (1..=crate::files::MAX_WRAPPED_LEN).contains(len))
        .ok_or_else(|| CliError::new(crate::client::exit::SERVER, "the rewrapped key has an unexpected size"))?;
    let body_offset = 9 + wrapped.len() as u64;
    tokio::task::block_in_place(|| replace(path, file, body_offset, new_len, &answer.ciphertext_blob))?;
    Ok(Outcome::Done { rewrapped: true, answer })
}

/// Writes the new header and the unchanged body to a temporary file, then renames it over `path`.
fn replace(path: &Path, mut original: File, body_offset: u64, new_len: u32, wrapped: &[u8]) -> Result<(), CliError> {
    let write_err = |e: io::Error| CliError::local(format!("cannot write: {e}"));
    let name = path.file_name().ok_or_else(|| CliError::usage("not a file name"))?;
    let tmp = path.with_file_name(format!(".{}.{}.rewrap.tmp", name.to_string_lossy(), std::process::id()));
    let permissions = original.metadata().map_err(write_err)?.permissions();
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(&tmp).map_err(write_err)?;
    let result = (|| {
        out.write_all(&MAGIC)?;
        out.write_all(&[VERSION])?;
        out.write_all(&new_len.to_be_bytes())?;
        out.write_all(wrapped)?;
        original.seek(SeekFrom::Start(body_offset))?;
        io::copy(&mut original, &mut out)?;
        out.set_permissions(permissions)?;
        out.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write_err)
}

/// The files to rewrap, sorted, each with whether it was named on the command line (a named
/// file that is not a kms file is an error; one met in a folder is counted and passed over).
fn collect(paths: &[PathBuf], journal: &Path) -> Result<Vec<(PathBuf, bool)>, CliError> {
    let mut files = BTreeSet::new();
    for path in paths {
        let meta = fs::metadata(path).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
        if meta.is_dir() {
            walk(path, &mut files).map_err(|e| CliError::local(format!("{}: {e}", path.display())))?;
        } else {
            files.insert((path.clone(), true));
        }
    }
    let journal = fs::canonicalize(journal).ok();
    Ok(files.into_iter().filter(|(p, _)| journal.is_none() || fs::canonicalize(p).ok() != journal).collect())
}

fn walk(dir: &Path, files: &mut BTreeSet<(PathBuf, bool)>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        let temporary = entry.file_name().to_string_lossy().ends_with(".tmp");
        if kind.is_dir() {
            walk(&path, files)?;
        } else if kind.is_file() && !temporary {
            files.insert((path, false));
        }
    }
    Ok(())
}

/// Removes the temporary files a killed run left beside the files (`.NAME.PID.rewrap.tmp`):
/// the file itself was either replaced before the kill or not, so they hold nothing needed.
fn remove_leftovers(files: &[(PathBuf, bool)]) {
    let names: BTreeSet<(PathBuf, String)> = files
        .iter()
        .filter_map(|(p, _)| Some((p.parent()?.to_owned(), format!(".{}.", p.file_name()?.to_string_lossy()))))
        .collect();
    let dirs: BTreeSet<&Path> = names.iter().map(|(d, _)| d.as_path()).collect();
    for dir in dirs {
        let Ok(entries) = fs::read_dir(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours =
                name.strip_suffix(".rewrap.tmp").and_then(|rest| rest.rsplit_once('.')).is_some_and(|(prefix, pid)| {
                    pid.bytes().all(|b| b.is_ascii_digit()) && names.contains(&(dir.to_owned(), format!("{prefix}.")))
                });
            if ours && fs::remove_file(entry.path()).is_ok() {
                eprintln!("kms: removed {}, left by an interrupted run", entry.path().display());
            }
        }
    }
}

fn read_journal(path: &Path) -> Result<BTreeSet<String>, CliError> {
    match File::open(path) {
        Ok(file) => BufReader::new(file)
            .lines()
            .collect::<io::Result<BTreeSet<String>>>()
            .map_err(|e| CliError::local(format!("journal {}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            eprintln!("kms: no journal {}: nothing to resume, every file is rewrapped", path.display());
            Ok(BTreeSet::new())
        }
        Err(e) => Err(CliError::local(format!("journal {}: {e}", path.display()))),
    }
}

fn open_journal(path: &Path, resume: bool) -> Result<File, CliError> {
    let mut options = OpenOptions::new();
    options.create(true);
    if resume {
        options.append(true)
    } else {
        options.write(true).truncate(true)
    };
    options.open(path).map_err(|e| CliError::local(format!("journal {}: {e}", path.display())))
}

fn progress(len: u64, hidden: bool) -> ProgressBar {
    if hidden || !io::IsTerminal::is_terminal(&io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} files, eta {eta} {wide_msg}") {
        bar.set_style(style);
    }
    bar
}
