//! The service itself: health, metrics, status, the configuration and its lifecycle
//! (configure, reconfigure, start, stop, saved through the manager's save hook), caches and
//! backup. Everything that reaches the backend goes through the per-call lease of the
//! [`EncryptionService`](kms_core::encryption::service::EncryptionService).

use std::sync::Arc;
use std::time::Instant;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use kms_core::service_manager::SaveHook;
use kms_types::api_types::{KmsConfigResponse, KmsServiceStatus};
use kms_types::config::KmsConfig;
use kms_types::error::KmsError;

use super::Call;
use crate::api::{CacheClearedBody, EmptyBody, HealthBody, LifecycleBody, StatusBody};
use crate::app::App;
use crate::auth::Operation;
use crate::body::configure_body;
use crate::error::ApiError;
use crate::responses::{Resp, bytes_response, json, text_response};
use crate::store::{ConfigStore, PersistedState, StoreError};

/// What a lifecycle change that took effect but could not be saved answers.
const NOT_SAVED: &str = "the change took effect but could not be saved for the next start";

/// The service manager's save hook of a server with a data folder: every lifecycle change is
/// saved in the [`ConfigStore`], under the manager's lifecycle lock.
#[derive(Debug)]
pub(crate) struct SaveToStore(pub(crate) Arc<ConfigStore>);

impl SaveHook for SaveToStore {
    fn save(&self, config: &KmsConfig, running: bool) -> kms_types::Result<()> {
        self.0.save(&PersistedState { config: config.clone(), running }).map_err(|e| {
            tracing::error!(error = %e, "cannot persist the service configuration");
            KmsError::Internal { message: NOT_SAVED.into(), source: Some(Box::new(e)) }
        })
    }
}

impl App {
    pub(crate) async fn health(&self, req: &Request<Incoming>) -> Result<Resp, ApiError> {
        let live_only = match req.uri().query() {
            None | Some("") | Some("probe=ready") => false,
            Some("probe=live") => true,
            Some(_) => return Err(ApiError::invalid("probe", "must be `live` or `ready`")),
        };
        if live_only {
            return Ok(json(StatusCode::OK, &HealthBody { live: true, ready: false }));
        }
        let ready = match self.manager.encryption_service().await {
            Some(service) => service.health_check().await.unwrap_or(false),
            None => false,
        };
        let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        Ok(json(status, &HealthBody { live: true, ready }))
    }

    pub(crate) async fn metrics_page(&self) -> Result<Resp, ApiError> {
        let (cache, key_cache) = match self.manager.encryption_service().await {
            Some(svc) => (svc.cache_stats().await.ok(), svc.backend_key_cache_stats().await.ok().flatten()),
            None => (None, None),
        };
        if self.audit.is_enabled() {
            self.metrics.set_audit(self.audit.dropped(), self.audit.is_healthy());
        }
        Ok(text_response(self.metrics.render_with(cache, key_cache)))
    }

    pub(crate) async fn status(&self) -> Result<Resp, ApiError> {
        let status = self.manager.status_response().await;
        let (cache, capabilities) = match self.manager.encryption_service().await {
            Some(svc) => (svc.cache_stats().await.ok(), svc.capabilities().await.ok()),
            None => (None, None),
        };
        Ok(json(StatusCode::OK, &StatusBody { status, cache, capabilities }))
    }

    pub(crate) async fn get_config(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let _: EmptyBody = self.body(call.req, false).await?;
        let config = self.manager.redacted_config().await;
        Ok(json(StatusCode::OK, &KmsConfigResponse { config }))
    }

    /// configure and reconfigure: the body is checked here (including that this server has
    /// the backend kind it names) before the manager sees it.
    pub(crate) async fn configure(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let body: serde_json::Map<String, serde_json::Value> = self.body(call.req, true).await?;
        let config = configure_body(body)?.to_config()?;
        config.validate()?;
        if !self.manager.supports(&config.backend) {
            let kinds: Vec<_> = self.manager.backend_kinds().iter().map(ToString::to_string).collect();
            return Err(ApiError::invalid(
                "backend_type",
                format!("`{}` is not a backend of this server (it has: {})", config.backend, kinds.join(", ")),
            ));
        }
        if call.operation == Operation::Configure && self.manager.get_status().await == KmsServiceStatus::Running {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "service_running",
                "the service is running: use POST /kms/v1/reconfigure to switch it",
            ));
        }
        self.lifecycle_change(call.operation, Some(config)).await
    }

    pub(crate) async fn start_or_stop(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let _: EmptyBody = self.body(call.req, false).await?;
        self.lifecycle_change(call.operation, None).await
    }

    /// configure / reconfigure / start / stop; the manager's save hook persists the result.
    ///
    /// The change runs to completion in a task of its own: a request that times out or whose
    /// client goes away (a reconfigure waits for the old backend's calls and its close) must
    /// not leave the service running one configuration while the data folder holds another
    /// for the next start.
    async fn lifecycle_change(&self, operation: Operation, config: Option<KmsConfig>) -> Result<Resp, ApiError> {
        let manager = self.manager.clone();
        let metrics = self.metrics.clone();
        let change = tokio::spawn(async move {
            let started = Instant::now();
            let result = match (operation, config) {
                (Operation::Configure, Some(config)) => manager.configure(config).await,
                (Operation::Reconfigure, Some(config)) => manager.reconfigure(config).await,
                (Operation::Start, None) => manager.start().await,
                (Operation::Stop, None) => manager.stop().await,
                _ => unreachable!("lifecycle_change is only called for lifecycle operations"),
            };
            metrics.observe_backend(operation.as_str(), started.elapsed(), result.as_ref().err().map(KmsError::code));
            result
        });
        let result = change.await.unwrap_or_else(|_| {
            Err(KmsError::Internal { message: "the lifecycle change failed".into(), source: None })
        });
        match result {
            Ok(()) => {
                let status = self.manager.get_status().await;
                Ok(json(StatusCode::OK, &LifecycleBody { status, persisted: self.store.is_some() }))
            }
            Err(KmsError::Internal { source: Some(source), .. }) if source.is::<StoreError>() => {
                Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "persist_failed", NOT_SAVED))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn clear_cache(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let _: EmptyBody = self.body(call.req, false).await?;
        self.service().await?.clear_caches().await?;
        Ok(json(StatusCode::OK, &CacheClearedBody { cleared: true }))
    }

    pub(crate) async fn backup(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let _: EmptyBody = self.body(call.req, false).await?;
        let svc = self.service().await?;
        let bundle = self.call(call.operation, svc.backup()).await?;
        Ok(bytes_response(bundle))
    }
}
