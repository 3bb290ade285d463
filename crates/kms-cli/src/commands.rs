//! The client commands: each one request (or a few) to the server, printed as a table or JSON.

use std::io::Read;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::Method;
use kms::admin::api::{DataKeyBody, DescriptionBody, TagBody, UntagBody};
use kms::api_types::{CacheClearedBody, KmsConfigResponse, LifecycleBody, StatusBody};
use kms::types::{
    CancelKeyDeletionResponse, CreateKeyRequest, CreateKeyResponse, DeleteKeyResponse, DescribeKeyResponse,
    GenerateDataKeyResponse, GenerateDataKeyWithoutPlaintextResponse, KeyMetadataResponse, KeySpec, ListKeysResponse,
};
use serde::Serialize;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::cli::{Cli, Command, GlobalArgs, KeyCommand, Origin, ServiceCommand, Spec, TokenCommand, WrappingSpec};
use crate::client::{CliError, Client};
use crate::output;
use crate::pairs::pairs;

/// Runs a parsed command line.
pub(crate) async fn run(cli: Cli) -> Result<(), CliError> {
    let global = cli.global;
    match cli.command {
        Command::Serve(args) => crate::serve::run(args).await,
        Command::Token(cmd) => token(cmd),
        Command::Config(cmd) => crate::config_check::run(cmd),
        Command::Completions { shell } => crate::manual::completions(shell),
        Command::Man => crate::manual::man_page(),
        Command::Key(cmd) => key(&client(&global)?, &global, cmd).await,
        Command::Alias(cmd) => crate::alias::run(&client(&global)?, &global, cmd).await,
        Command::Datakey(args) => {
            let client = client(&global)?;
            let body = DataKeyBody {
                key_spec: match args.spec {
                    Spec::Aes256 => KeySpec::Aes256,
                    Spec::Aes128 => KeySpec::Aes128,
                },
                encryption_context: pairs("--context", &args.context)?,
            };
            let key = segment(&args.key_id)?;
            if args.no_plaintext {
                let path = format!("/kms/v1/keys/{key}/generate-data-key-without-plaintext");
                let wrapped: GenerateDataKeyWithoutPlaintextResponse =
                    client.call(Method::POST, &path, Some(&body)).await?;
                show(&global, &as_value(&wrapped)?, output::fields);
            } else {
                let path = format!("/kms/v1/keys/{key}/generate-data-key");
                // The answer holds the plaintext data key: parsed from a buffer that is then
                // zeroized into a `SecretBytes`, printed (what this command is for), then wiped.
                let answer: GenerateDataKeyResponse = client.call_secret(Method::POST, &path, Some(&body)).await?;
                let mut v = data_key_value(&answer)?;
                show(&global, &v, output::fields);
                wipe_strings(&mut v);
            }
            Ok(())
        }
        Command::Status => service(&client(&global)?, &global, ServiceCommand::Status).await,
        Command::Service(cmd) => service(&client(&global)?, &global, cmd).await,
        Command::Encrypt(args) => crate::files::encrypt(&client(&global)?, args).await,
        Command::Decrypt(args) => crate::files::decrypt(&client(&global)?, args).await,
        Command::Rewrap(args) => crate::rewrap::run(&client(&global)?, &global, args).await,
        Command::Backup(args) => crate::backup::backup(&client(&global)?, &global, args).await,
        Command::Restore(args) => crate::backup::restore(&global, args),
        Command::Migrate(cmd) => crate::migrate::run(&client(&global)?, &global, cmd).await,
    }
}

/// A client for `--url` with the token [`crate::token::resolve`] finds.
fn client(global: &GlobalArgs) -> Result<Client, CliError> {
    let resolved = crate::token::resolve(global)?;
    if global.verbose {
        eprintln!("kms: token: {}; server: {}", resolved.source, global.url);
    }
    if let Some(warning) = crate::token::plain_http_warning(&global.url, resolved.token.is_some()) {
        eprintln!("kms: {warning}");
    }
    Ok(Client::new(&global.url, resolved.token, global.ca_cert.as_deref())?.explain_refusal(resolved.on_refusal))
}

/// A data key answer as the JSON the server sent, to print. The plaintext key is encoded
/// into a buffer of its final size that moves into the value (no serializer's temporary copy
/// left unwiped); the caller wipes the value with [`wipe_strings`].
fn data_key_value(answer: &GenerateDataKeyResponse) -> Result<Value, CliError> {
    let mut v = as_value(&GenerateDataKeyWithoutPlaintextResponse {
        key_id: answer.key_id.clone(),
        key_version: answer.key_version,
        ciphertext_blob: answer.ciphertext_blob.clone(),
    })?;
    let key = answer.plaintext_key.expose_secret();
    let mut encoded = String::with_capacity(key.len().div_ceil(3) * 4);
    STANDARD.encode_string(key, &mut encoded);
    v["plaintext_key"] = Value::String(encoded);
    Ok(v)
}

/// Overwrites every string of `v` (an answer that held key material) before it is dropped.
fn wipe_strings(v: &mut Value) {
    match v {
        Value::String(s) => zeroize::Zeroize::zeroize(s),
        Value::Array(items) => items.iter_mut().for_each(wipe_strings),
        Value::Object(map) => map.values_mut().for_each(wipe_strings),
        _ => {}
    }
}

fn show(global: &GlobalArgs, v: &Value, human: impl FnOnce(&Value)) {
    if global.json { output::json(v) } else { human(v) }
}

/// Reads a list route (`path`, with `query`) from `marker` on: one page, or with `all` every
/// page. Returns the items of `field` of every page read, and the last page.
pub(crate) async fn pages(
    client: &Client,
    path: &str,
    query: Vec<String>,
    mut marker: Option<String>,
    all: bool,
    field: &str,
) -> Result<(Vec<Value>, Value), CliError> {
    let mut items = Vec::new();
    loop {
        let mut query = query.clone();
        query.extend(marker.as_ref().map(|m| format!("marker={m}")));
        let path = if query.is_empty() { path.to_owned() } else { format!("{path}?{}", query.join("&")) };
        let v: Value = client.call(Method::GET, &path, None::<&()>).await?;
        items.extend(v[field].as_array().cloned().unwrap_or_default());
        marker = v["next_marker"].as_str().map(kms::admin::aliases::key_segment);
        if !all || !v["truncated"].as_bool().unwrap_or(false) || marker.is_none() {
            return Ok((items, v));
        }
    }
}

/// Checks a key id or alias before it goes into a URL path, as one segment (an alias's `/`
/// as `%2F`).
pub(crate) fn segment(key_ref: &str) -> Result<String, CliError> {
    kms::admin::aliases::check_key_ref("key_id", key_ref).map_err(|e| CliError::usage(e.message))?;
    Ok(kms::admin::aliases::key_segment(key_ref))
}

/// A typed answer (a `kms::types` wire type, read and checked by `Client::call`) as the JSON
/// the output functions print.
fn as_value(answer: &impl Serialize) -> Result<Value, CliError> {
    serde_json::to_value(answer).map_err(|e| CliError::local(format!("cannot show the answer: {e}")))
}

async fn key(client: &Client, global: &GlobalArgs, cmd: KeyCommand) -> Result<(), CliError> {
    let show_metadata = |v: &Value| {
        let m = v.get("key_metadata").unwrap_or(v);
        output::fields(m);
    };
    match cmd {
        KeyCommand::Create { name, description, tags, origin } => {
            let request = CreateKeyRequest {
                key_name: name,
                description,
                tags: pairs("--tag", &tags)?,
                origin: (origin == Origin::External).then_some(kms::types::KeyOrigin::External),
                ..CreateKeyRequest::default()
            };
            let created: CreateKeyResponse = client.call(Method::POST, "/kms/v1/keys", Some(&request)).await?;
            show(global, &as_value(&created)?, show_metadata);
        }
        KeyCommand::List { limit, marker, all } => {
            let mut marker = marker;
            let mut keys = Vec::new();
            let last = loop {
                let mut query = Vec::new();
                if let Some(l) = limit {
                    query.push(format!("limit={l}"));
                }
                if let Some(m) = &marker {
                    query.push(format!("marker={}", segment(m)?));
                }
                let path =
                    if query.is_empty() { "/kms/v1/keys".into() } else { format!("/kms/v1/keys?{}", query.join("&")) };
                let mut page: ListKeysResponse = client.call(Method::GET, &path, None::<&()>).await?;
                keys.append(&mut page.keys);
                marker.clone_from(&page.next_marker);
                if !all || !page.truncated || marker.is_none() {
                    break page;
                }
            };
            if global.json {
                output::json(&as_value(&ListKeysResponse { keys, ..last })?);
            } else {
                // The state as the server's JSON names it (`enabled`, `pending_deletion`, ...).
                let rows = keys
                    .iter()
                    .map(|k| Ok(vec![k.key_id.clone(), output::cell(&as_value(&k.key_state)?)]))
                    .collect::<Result<Vec<_>, CliError>>()?;
                output::table(&["KEY ID", "STATE"], &rows);
                if let (false, true, Some(m)) = (all, last.truncated, &last.next_marker) {
                    eprintln!("(more keys: --marker {m}, or --all)");
                }
            }
        }
        KeyCommand::Describe { key_id } => {
            let path = format!("/kms/v1/keys/{}", segment(&key_id)?);
            let described: DescribeKeyResponse = client.call(Method::GET, &path, None::<&()>).await?;
            show(global, &as_value(&described)?, show_metadata);
        }
        KeyCommand::Enable { key_id } => simple(client, global, &key_id, "enable").await?,
        KeyCommand::Disable { key_id } => simple(client, global, &key_id, "disable").await?,
        KeyCommand::Import { key_id, material_file, valid_to, new_version, wrapping_key_spec } => {
            let imported =
                import_material(client, &key_id, &material_file, valid_to, new_version, wrapping_key_spec).await?;
            show(global, &as_value(&imported)?, show_metadata);
        }
        KeyCommand::DeleteMaterial { key_id } => {
            let path = format!("/kms/v1/keys/{}/import-material", segment(&key_id)?);
            let deleted: KeyMetadataResponse = client.call(Method::DELETE, &path, None::<&()>).await?;
            show(global, &as_value(&deleted)?, show_metadata);
        }
        KeyCommand::Rotate { key_id } => simple(client, global, &key_id, "rotate").await?,
        KeyCommand::CancelDeletion { key_id } => simple(client, global, &key_id, "cancel-deletion").await?,
        KeyCommand::Delete { key_id, pending_days } => {
            let path = format!("/kms/v1/keys/{}?pending_window_in_days={pending_days}", segment(&key_id)?);
            let scheduled: DeleteKeyResponse = client.call(Method::DELETE, &path, None::<&()>).await?;
            show(global, &as_value(&scheduled)?, output::fields);
        }
        KeyCommand::Tag { key_id, tags } => {
            let body = TagBody { tags: pairs("tag", &tags)? };
            let path = format!("/kms/v1/keys/{}/tags", segment(&key_id)?);
            let tagged: KeyMetadataResponse = client.call(Method::POST, &path, Some(&body)).await?;
            show(global, &as_value(&tagged)?, show_metadata);
        }
        KeyCommand::Untag { key_id, names } => {
            let path = format!("/kms/v1/keys/{}/untag", segment(&key_id)?);
            let body = UntagBody { tag_keys: names };
            let untagged: KeyMetadataResponse = client.call(Method::POST, &path, Some(&body)).await?;
            show(global, &as_value(&untagged)?, show_metadata);
        }
        KeyCommand::SetDescription { key_id, description } => {
            let path = format!("/kms/v1/keys/{}/description", segment(&key_id)?);
            let body = DescriptionBody { description };
            let described: KeyMetadataResponse = client.call(Method::PUT, &path, Some(&body)).await?;
            show(global, &as_value(&described)?, show_metadata);
        }
    }
    Ok(())
}

/// `kms key import`: parameters from the server, the material wrapped here, the wrapped bytes
/// sent. The material is read into a buffer wiped on drop and never leaves this process
/// unwrapped.
async fn import_material(
    client: &Client,
    key_id: &str,
    material_file: &std::path::Path,
    valid_to: Option<String>,
    new_version: bool,
    spec: WrappingSpec,
) -> Result<KeyMetadataResponse, CliError> {
    let material = Zeroizing::new(
        std::fs::read(material_file)
            .map_err(|e| CliError::local(format!("cannot read {}: {e}", material_file.display())))?,
    );
    if material.len() != kms::byok::IMPORT_MATERIAL_LEN {
        return Err(CliError::local(format!(
            "{} holds {} bytes; key material is exactly 32 raw bytes (AES-256)",
            material_file.display(),
            material.len()
        )));
    }
    let valid_to = valid_to
        .map(|text| {
            time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                .map_err(|_| CliError::usage(format!("--valid-to {text}: not an RFC 3339 date-time")))
        })
        .transpose()?;
    let segment = segment(key_id)?;
    let body = kms::byok::ImportParametersBody {
        wrapping_key_spec: match spec {
            WrappingSpec::Rsa3072 => kms::byok::WrappingKeySpec::Rsa3072,
            WrappingSpec::Rsa4096 => kms::byok::WrappingKeySpec::Rsa4096,
        },
        ..Default::default()
    };
    let path = format!("/kms/v1/keys/{segment}/import-parameters");
    let params: kms::byok::GetParametersForImportResponse = client.call(Method::POST, &path, Some(&body)).await?;
    let encrypted_key_material = kms::crypto::wrapping::wrap_material(&params.public_key, &material)
        .map_err(|e| CliError::local(format!("cannot wrap the material under the server's key: {e}")))?;
    drop(material);
    let body = kms::byok::ImportMaterialBody {
        encrypted_key_material,
        import_token: params.import_token,
        valid_to,
        new_version,
    };
    let path = format!("/kms/v1/keys/{segment}/import-material");
    client.call(Method::POST, &path, Some(&body)).await
}

async fn simple(client: &Client, global: &GlobalArgs, key_id: &str, action: &str) -> Result<(), CliError> {
    let path = format!("/kms/v1/keys/{}/{action}", segment(key_id)?);
    // Cancelling a deletion answers with its own shape; the other actions with the metadata.
    let v = if action == "cancel-deletion" {
        as_value(&client.call::<CancelKeyDeletionResponse>(Method::POST, &path, None::<&()>).await?)?
    } else {
        as_value(&client.call::<KeyMetadataResponse>(Method::POST, &path, None::<&()>).await?)?
    };
    show(global, &v, |v| output::fields(v.get("key_metadata").unwrap_or(v)));
    Ok(())
}

async fn service(client: &Client, global: &GlobalArgs, cmd: ServiceCommand) -> Result<(), CliError> {
    let none = None::<&()>;
    let v = match cmd {
        ServiceCommand::Status => as_value(&client.call::<StatusBody>(Method::GET, "/kms/v1/status", none).await?)?,
        ServiceCommand::Config => {
            as_value(&client.call::<KmsConfigResponse>(Method::GET, "/kms/v1/config", none).await?)?
        }
        ServiceCommand::Configure { file } => {
            lifecycle(client, "/kms/v1/configure", Some(&request_file(&file)?)).await?
        }
        ServiceCommand::Reconfigure { file } => {
            lifecycle(client, "/kms/v1/reconfigure", Some(&request_file(&file)?)).await?
        }
        ServiceCommand::Start => lifecycle(client, "/kms/v1/start", None).await?,
        ServiceCommand::Stop => lifecycle(client, "/kms/v1/stop", None).await?,
        ServiceCommand::ClearCache => {
            as_value(&client.call::<CacheClearedBody>(Method::POST, "/kms/v1/cache/clear", none).await?)?
        }
    };
    show(global, &v, output::fields);
    Ok(())
}

/// configure, reconfigure, start, stop: the service's state afterwards.
async fn lifecycle(client: &Client, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
    as_value(&client.call::<LifecycleBody>(Method::POST, path, body).await?)
}

/// Reads a configure request from a JSON or TOML file (`-` for stdin).
fn request_file(path: &PathBuf) -> Result<Value, CliError> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| CliError::local(format!("stdin: {e}")))?;
        Zeroizing::new(s)
    } else {
        Zeroizing::new(std::fs::read_to_string(path).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?)
    };
    if let Ok(v) = serde_json::from_str::<Value>(&text) {
        return Ok(v);
    }
    toml::from_str::<Value>(&text).map_err(|e| {
        let e = crate::serve::toml_error(&e, &text);
        CliError::usage(format!("{}: neither JSON nor TOML: {e}", path.display()))
    })
}

fn token(cmd: TokenCommand) -> Result<(), CliError> {
    match cmd {
        TokenCommand::Generate => {
            let token = kms::admin::auth::generate_token();
            println!("token:        {}", token.as_str());
            println!("token_sha256: {}", kms::admin::auth::hash_token(&token));
        }
        TokenCommand::Hash => {
            let mut s = Zeroizing::new(String::new());
            std::io::stdin().read_to_string(&mut s).map_err(|e| CliError::local(format!("stdin: {e}")))?;
            println!("{}", kms::admin::auth::hash_token(s.trim()));
        }
        TokenCommand::Aws { identity, data_dir, seal_key_file } => {
            let store = kms::admin::store::ConfigStore::open(&data_dir, seal_key_file.as_deref())
                .map_err(|e| CliError::local(format!("seal key: {e}")))?;
            let (key, secret) = crate::aws_keys::new_access_key(&store, &identity)?;
            println!("# Add to kms.toml, then restart kms serve:");
            println!("[[server.aws.access_keys]]");
            println!("identity = {:?}", key.identity);
            println!("access_key_id = {:?}", key.access_key_id);
            println!("secret_access_key = {:?}", key.secret_access_key);
            println!();
            println!("# For the client (shown once):");
            println!("aws_access_key_id = {}", key.access_key_id);
            println!("aws_secret_access_key = {}", secret.as_str());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_with_key_material_is_wiped_after_it_is_shown() {
        let mut v = serde_json::json!({"key_id": "k", "plaintext_key": "c2VjcmV0", "nested": {"a": ["xyz"]}});
        wipe_strings(&mut v);
        // `String::zeroize` overwrites the bytes, then empties the string.
        assert_eq!(v, serde_json::json!({"key_id": "", "plaintext_key": "", "nested": {"a": [""]}}));
    }

    #[test]
    fn a_data_key_answer_prints_as_the_server_sent_it() {
        for len in [16, 32] {
            let answer = GenerateDataKeyResponse {
                key_id: "app".into(),
                key_version: 3,
                plaintext_key: kms::secret::SecretBytes::new(vec![0xA5; len]),
                ciphertext_blob: vec![1, 2, 3, 4],
            };
            // What the server writes is `answer` serialized; the command prints exactly that.
            let sent = serde_json::to_value(&answer).unwrap();
            let mut shown = data_key_value(&answer).unwrap();
            assert_eq!(shown, sent, "{len}");
            wipe_strings(&mut shown);
            assert_eq!(shown["plaintext_key"], "");
        }
    }

    #[test]
    fn a_bad_request_file_is_reported_without_echoing_its_lines() {
        let path = std::env::temp_dir().join(format!("kms-cli-badreq-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "backend_type = \"vault\"\nauth_method = { type = \"token\", token = \"s.must-not-leak\" x\n",
        )
        .unwrap();
        let err = request_file(&path).unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(!err.message.contains("must-not-leak"), "{}", err.message);
        assert!(err.message.contains("line 2"), "{}", err.message);
    }
}
