//! The local backend passes the backend contract suite of `kms-core`, each case on a fresh
//! key directory.

use kms_backend_local::LocalBackend;
use kms_types::config::{LocalConfig, MasterKeySource};

async fn fresh_backend() -> LocalBackend {
    // Kept under cargo's per-target scratch directory: the backend outlives this function.
    let dir = tempfile::Builder::new().prefix("contract-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap().keep();
    let master_key = MasterKeySource::Key { key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into() };
    LocalBackend::open(&LocalConfig::new(dir.join("keys"), master_key)).await.expect("backend opens")
}

kms_core::backend_contract_tests!(async { fresh_backend().await });
