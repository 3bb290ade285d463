//! The slot that holds the backend in force: the [`KmsServiceManager`] swaps what is in it,
//! and every call of a managed [`EncryptionService`] leases it for the call's duration. Both
//! depend on this module; it depends on neither.
//!
//! [`KmsServiceManager`]: crate::service_manager::KmsServiceManager
//! [`EncryptionService`]: crate::encryption::service::EncryptionService

use std::sync::Arc;

use kms_types::error::{KmsError, Result};
use tokio::sync::{OwnedRwLockReadGuard, RwLock};

use crate::manager::KmsManager;

/// The backend in force: its manager, the default key, and the lock in-flight calls hold
/// (read) and retirement takes (write) so the backend is closed only after they finish.
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) manager: Arc<KmsManager>,
    pub(crate) default_key_id: Option<String>,
    pub(crate) in_flight: Arc<RwLock<()>>,
}

/// Where managed [`EncryptionService`]s find the backend in force.
#[derive(Debug, Default)]
pub(crate) struct ServiceSlot {
    pub(crate) active: RwLock<Option<Arc<Active>>>,
}

impl ServiceSlot {
    /// The backend in force and a guard that keeps it open. The slot's read lock is held
    /// while taking the guard, so a swap cannot retire this backend in between. Neither lock
    /// is contended but while a reconfigure swaps or retires a backend, so each is tried
    /// without waiting first (an atomic operation, where a queued acquire costs a waiter
    /// node and a future per call), then awaited in turn, fairly, behind that writer.
    pub(crate) async fn lease(&self) -> Result<(Arc<Active>, OwnedRwLockReadGuard<()>)> {
        let slot = match self.active.try_read() {
            Ok(slot) => slot,
            Err(_) => self.active.read().await,
        };
        let active = slot
            .as_ref()
            .ok_or_else(|| KmsError::ServiceUnavailable { message: "the kms service is not running".into() })?;
        let guard = match Arc::clone(&active.in_flight).try_read_owned() {
            Ok(guard) => guard,
            Err(_) => Arc::clone(&active.in_flight).read_owned().await,
        };
        Ok((Arc::clone(active), guard))
    }

    pub(crate) async fn replace(&self, next: Option<Arc<Active>>) -> Option<Arc<Active>> {
        std::mem::replace(&mut *self.active.write().await, next)
    }
}

/// Waits for the calls running on `active` to finish, then closes its backend.
pub(crate) async fn retire(active: Arc<Active>) {
    let _no_more_calls = active.in_flight.write().await;
    if let Err(e) = active.manager.close().await {
        tracing::warn!(backend = active.manager.backend().backend_name(), error = %e, "closing a retired kms backend failed");
    }
}
