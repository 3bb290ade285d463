//! `cargo xtask ha` and `cargo xtask bench ha`: a 3-node OpenBao Raft cluster and two
//! `kms serve` processes on loopback, then the driver (`kms-backend-vault`'s `ha` bench
//! target) against them. Everything listens on free loopback ports and is killed on drop,
//! whatever happens.
//!
//! The cluster: `storage "raft"` with `retry_join` to all three nodes, `seal "static"` with a
//! random 32-byte key file for auto-unseal, `bao operator init -recovery-shares=1
//! -recovery-threshold=1` on node 1, Transit and KV v2 mounted, then a wait until all three
//! nodes are Raft voters (joiners start as non-voters and are promoted after 10-20 s; a kill
//! before that could leave no quorum). Default Raft timing: an election after the leader dies
//! takes ~9-14 s, which the kms servers' 30 s budget outlasts.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::openbao::{find_or_install_bao, free_port, free_ports};

/// The coherence bound the kms servers run with (the default).
const COHERENCE_SECONDS: u64 = 2;

/// Child processes killed (SIGKILL) and reaped on drop.
#[derive(Debug, Default)]
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the cluster and servers look like, for the driver.
#[derive(Debug)]
struct Deployment {
    processes: Processes,
    env: Vec<(&'static str, String)>,
    /// Raft data, logs, configurations holding the root token: removed after a passing run,
    /// kept (0600 files) for a failing one.
    dir: std::path::PathBuf,
}

impl Deployment {
    /// Stops every process; removes the run's folder when `passed`.
    fn finish(self, passed: bool) {
        drop(self.processes);
        if passed {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("xtask ha: logs kept in {}", self.dir.display());
        }
    }
}

/// `cargo xtask ha [SECONDS]`: the HA run (load for SECONDS, default 40).
pub(crate) fn run(root: &Path, seconds: u64) -> Result<(), String> {
    let deployment = deploy(root)?;
    let mut env = deployment.env.clone();
    env.push(("KMS_HA_MODE", "run".into()));
    env.push(("KMS_HA_SECONDS", seconds.to_string()));
    env.push(("KMS_HA_COHERENCE_SECONDS", COHERENCE_SECONDS.to_string()));
    let result = crate::cargo_with_env(&["test", "-p", "kms-backend-vault", "--all-features", "--bench", "ha"], &env);
    deployment.finish(result.is_ok());
    result
}

/// `cargo xtask bench ha`: throughput through 1 and 2 servers, and the coherence cost.
pub(crate) fn bench(root: &Path) -> Result<(), String> {
    let deployment = deploy(root)?;
    let mut env = deployment.env.clone();
    env.push(("KMS_HA_MODE", "bench".into()));
    // The kms servers are the debug build `run` uses, so the driver is too (`cargo test`
    // runs a harness-less bench target once): the figures are ratios within one run.
    let result = crate::cargo_with_env(&["test", "-p", "kms-backend-vault", "--all-features", "--bench", "ha"], &env);
    deployment.finish(result.is_ok());
    result
}

fn deploy(root: &Path) -> Result<Deployment, String> {
    let bin = find_or_install_bao(root)?;
    crate::cargo(&["build", "-p", "kms-cli", "--bin", "kms"])?;
    let kms_bin = root.join("target").join("debug").join("kms");
    let dir = root.join("target").join("ha").join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut processes = Processes::default();

    // The static unseal key: 32 random bytes, 0600.
    let key_file = dir.join("unseal.key");
    let mut key = [0u8; 32];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key)).map_err(|e| format!("/dev/urandom: {e}"))?;
    write_private(&key_file, &key)?;

    // Six distinct ports, picked together: a node whose API and cluster ports coincide never
    // joins the Raft cluster.
    let ports = free_ports(6)?;
    let (api, cluster) = ports.split_at(3);
    let addrs: Vec<String> = api.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    for i in 0..3 {
        let node_dir = dir.join(format!("node{}", i + 1));
        std::fs::create_dir_all(&node_dir).map_err(|e| e.to_string())?;
        let config = node_config(i, &node_dir, &addrs, api[i], cluster[i], &key_file);
        let config_path = dir.join(format!("node{}.hcl", i + 1));
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let log = File::create(dir.join(format!("node{}.log", i + 1))).map_err(|e| e.to_string())?;
        let child = Command::new(&bin)
            .arg("server")
            .arg(format!("-config={}", config_path.display()))
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start bao: {e}"))?;
        processes.0.push(child);
    }
    let bao = |addr: &str, token: Option<&str>, args: &[&str]| -> Result<String, String> {
        let mut command = Command::new(&bin);
        command.args(args).env("BAO_ADDR", addr).env_remove("BAO_NAMESPACE").stdin(Stdio::null());
        match token {
            Some(t) => command.env("BAO_TOKEN", t),
            None => command.env_remove("BAO_TOKEN"),
        };
        let out = command.output().map_err(|e| format!("cannot run bao: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("`bao {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
        }
    };
    eprintln!("xtask ha: 3 OpenBao nodes at {} (logs in {})", addrs.join(", "), dir.display());
    let init = wait_for("node 1 to accept init", Duration::from_secs(30), || {
        bao(&addrs[0], None, &["operator", "init", "-recovery-shares=1", "-recovery-threshold=1", "-format=json"]).ok()
    })?;
    let token = json_string(&init, "root_token").ok_or("no root_token in the init output")?;
    wait_for("node 1 to become active", Duration::from_secs(60), || {
        bao(&addrs[0], Some(&token), &["secrets", "list"]).ok()
    })?;
    bao(&addrs[0], Some(&token), &["secrets", "enable", "transit"])?;
    bao(&addrs[0], Some(&token), &["secrets", "enable", "-path=secret", "kv-v2"])?;
    let started = Instant::now();
    wait_for("3 Raft voters", Duration::from_secs(120), || {
        let peers = bao(&addrs[0], Some(&token), &["operator", "raft", "list-peers", "-format=json"]).ok()?;
        (peers.matches("\"voter\": true").count() == 3).then_some(())
    })?;
    eprintln!("xtask ha: 3 voters after {:.1}s", started.elapsed().as_secs_f64());

    // Two kms servers with the same [kms] configuration; each its own data folder.
    let kms_body = format!(
        r#"{{"backend_type":"vault","address":[{}],"auth_method":{{"type":"token","token":"{token}"}},"cache_coherence_seconds":{COHERENCE_SECONDS}}}"#,
        addrs.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(",")
    );
    let (mut urls, mut tokens, mut pids) = (Vec::new(), Vec::new(), Vec::new());
    for name in ["a", "b"] {
        let port = free_port()?;
        let data = dir.join(format!("kms-{name}"));
        let toml = format!(
            "data_dir = \"{}\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\nrequest_timeout_seconds = 45\n\n[kms]\nbackend_type = \"vault\"\naddress = [{}]\ncache_coherence_seconds = {COHERENCE_SECONDS}\n\n[kms.auth_method]\ntype = \"token\"\ntoken = \"{token}\"\n",
            data.display(),
            addrs.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ")
        );
        let config = dir.join(format!("kms-{name}.toml"));
        write_private(&config, toml.as_bytes())?;
        let log = File::create(dir.join(format!("kms-{name}.log"))).map_err(|e| e.to_string())?;
        let child = Command::new(&kms_bin)
            .args(["serve", "--config"])
            .arg(&config)
            .env("KMS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start kms: {e}"))?;
        pids.push(child.id().to_string());
        processes.0.push(child);
        let token_file = data.join("admin.token");
        let admin = wait_for("a kms server's admin token", Duration::from_secs(30), || {
            std::fs::read_to_string(&token_file).ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
        })?;
        urls.push(format!("http://127.0.0.1:{port}"));
        tokens.push(admin);
    }
    eprintln!("xtask ha: kms servers at {}", urls.join(", "));
    let bao_pids: Vec<String> = processes.0[..3].iter().map(|c| c.id().to_string()).collect();
    let env = vec![
        ("KMS_HA_URLS", urls.join(",")),
        ("KMS_HA_TOKENS", tokens.join(",")),
        ("KMS_HA_KMS_PIDS", pids.join(",")),
        ("KMS_HA_BAO_ADDRS", addrs.join(",")),
        ("KMS_HA_BAO_PIDS", bao_pids.join(",")),
        ("KMS_HA_RECONFIGURE", kms_body),
    ];
    Ok(Deployment { processes, env, dir })
}

/// One node's configuration: Raft storage joining all three, static-key auto-unseal.
fn node_config(i: usize, dir: &Path, addrs: &[String], api: u16, cluster: u16, key_file: &Path) -> String {
    let joins: String =
        addrs.iter().map(|a| format!("  retry_join {{\n    leader_api_addr = \"{a}\"\n  }}\n")).collect();
    format!(
        r#"storage "raft" {{
  path = "{dir}"
  node_id = "node{n}"
{joins}}}

listener "tcp" {{
  address = "127.0.0.1:{api}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_disable = true
}}

seal "static" {{
  current_key_id = "ha-1"
  current_key = "file://{key}"
}}

api_addr = "http://127.0.0.1:{api}"
cluster_addr = "https://127.0.0.1:{cluster}"
disable_mlock = true
"#,
        dir = dir.display(),
        n = i + 1,
        key = key_file.display(),
    )
}

/// Writes `bytes` to a new file readable by its owner only.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Polls `probe` every 250 ms until it answers or `limit` passes.
fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Result<T, String> {
    let started = Instant::now();
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if started.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The string value of `"name": "..."` in JSON output (no escapes expected in a token).
fn json_string(json: &str, name: &str) -> Option<String> {
    let after = &json[json.find(&format!("\"{name}\""))? + name.len() + 2..];
    let start = after.find('"')? + 1;
    let end = after[start..].find('"')? + start;
    Some(after[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_token_is_read_from_init_output() {
        let out = "{\n  \"unseal_keys_b64\": [],\n  \"root_token\": \"s.abc123\",\n  \"x\": 1\n}";
        assert_eq!(json_string(out, "root_token").as_deref(), Some("s.abc123"));
        assert_eq!(json_string(out, "missing"), None);
    }

    #[test]
    fn node_configs_join_every_node_and_auto_unseal() {
        let addrs = vec!["http://127.0.0.1:1".to_owned(), "http://127.0.0.1:2".to_owned()];
        let c = node_config(0, Path::new("/d"), &addrs, 1, 11, Path::new("/k"));
        assert_eq!(c.matches("retry_join").count(), 2);
        assert!(c.contains("seal \"static\"") && c.contains("file:///k"));
        assert!(c.contains("cluster_addr = \"https://127.0.0.1:11\""));
    }
}
