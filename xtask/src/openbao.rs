//! The OpenBao dev server of `cargo xtask test` and `cargo xtask openbao`: the launcher of
//! `kms_testkit::openbao` (std only; the one launcher the tests and benches use too), with
//! `bao` installed into the workspace's `.tools/openbao` and the server's log kept under
//! `target/openbao/`.

use std::path::{Path, PathBuf};

pub(crate) use kms_testkit::openbao::OpenBao;

/// `KMS_TEST_BAO_BIN`, else `bao` on PATH, else the workspace's `.tools/openbao` (installed
/// there on demand).
pub(crate) fn find_or_install_bao(workspace_root: &Path) -> Result<PathBuf, String> {
    Ok(kms_testkit::openbao::find_or_install_bao(&workspace_root.join(".tools").join("openbao"))?)
}

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> Result<u16, String> {
    Ok(kms_testkit::openbao::free_port()?)
}

/// `count` distinct loopback ports that were free a moment ago.
pub(crate) fn free_ports(count: usize) -> Result<Vec<u16>, String> {
    Ok(kms_testkit::openbao::free_ports(count)?)
}

/// Finds (or installs) `bao` and starts a dev server (Transit, AppRole, KV v2 at `secret/`),
/// logging to `target/openbao/bao-<xtask pid>.log`.
pub(crate) fn start(workspace_root: &Path) -> Result<OpenBao, String> {
    let log = workspace_root.join("target").join("openbao").join(format!("bao-{}.log", std::process::id()));
    Ok(OpenBao::builder(find_or_install_bao(workspace_root)?).log_file(log).start()?)
}
