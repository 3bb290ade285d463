//! Authentication: a static token, or AppRole with renewal and re-login.
//!
//! AppRole policy (the failure modes seen in the field: tokens used after expiry, renewing too
//! late, renew loops hammering a failing server):
//! - a token is used only while more than a safety margin (a fifth of its lease, 200 ms to
//!   10 s) remains before it expires; past that, the caller waits for a login;
//! - a background task renews the token at two thirds of its lease; when the token is not
//!   renewable, renewal fails, or the renewed lease is cut short by the token's max TTL, it
//!   logs in again instead;
//! - failed logins back off exponentially with jitter (1 s to 30 s; 250 ms to 2 s when no node
//!   could take the login, e.g. during a leader election); while backing off, calls fail at
//!   once with the last error instead of calling Vault again, and the renewal task sleeps. No
//!   path loops without sleeping, and a node's failure on an ordinary call never causes a login
//!   (tokens are cluster-wide).

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use kms_types::config::VaultAuthMethod;
use kms_types::error::KmsError;
use kms_types::secret::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::classify::{CallError, Class};
use crate::transport::{self, Route, Transport, backoff};

/// Smallest and largest delay between failed logins.
const LOGIN_BACKOFF_MIN: Duration = Duration::from_secs(1);
const LOGIN_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The same, when the login failed because no node could take it (down, election running).
const AVAILABILITY_BACKOFF_MIN: Duration = Duration::from_millis(250);
const AVAILABILITY_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A token (the only copy this backend keeps: a zeroizing [`SecretString`]; each request puts
/// it in a header marked sensitive). Tokens are cluster-wide: any node accepts them, and a
/// node's failure never causes a login.
pub(crate) struct Session {
    pub(crate) token: SecretString,
    /// When the token stops being usable (expiry minus the safety margin); `None`: never.
    usable_until: Option<Instant>,
    /// When the background task renews (or replaces) it.
    renew_at: Option<Instant>,
    lease: Duration,
    renewable: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("token", &self.token)
            .field("usable_until", &self.usable_until)
            .field("lease", &self.lease)
            .field("renewable", &self.renewable)
            .finish_non_exhaustive()
    }
}

impl Session {
    fn usable(&self, now: Instant) -> bool {
        self.usable_until.is_none_or(|t| now < t)
    }
}

fn safety_margin(lease: Duration) -> Duration {
    (lease / 5).clamp(Duration::from_millis(200), Duration::from_secs(10))
}

enum Method {
    Token,
    AppRole { role_id: String, secret_id: SecretString, mount: String },
}

/// Login back-off state, behind the single-flight lock.
#[derive(Default)]
struct Gate {
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<(Class, String)>,
}

/// The current session and how to get a new one.
pub(crate) struct Auth {
    transport: Arc<Transport>,
    method: Method,
    current: RwLock<Option<Arc<Session>>>,
    gate: tokio::sync::Mutex<Gate>,
    renewer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let method = match &self.method {
            Method::Token => "token",
            Method::AppRole { .. } => "approle",
        };
        f.debug_struct("Auth").field("method", &method).finish_non_exhaustive()
    }
}

impl Auth {
    /// Sets up authentication; for AppRole, logs in and starts the renewal task.
    pub(crate) async fn new(transport: Arc<Transport>, method: &VaultAuthMethod) -> Result<Arc<Self>, KmsError> {
        let (method, session) = match method {
            VaultAuthMethod::Token { token } => {
                let session = Session {
                    token: token.clone(),
                    usable_until: None,
                    renew_at: None,
                    lease: Duration::ZERO,
                    renewable: false,
                };
                (Method::Token, Some(Arc::new(session)))
            }
            VaultAuthMethod::AppRole { role_id, secret_id, mount_path } => (
                Method::AppRole {
                    role_id: role_id.clone(),
                    secret_id: secret_id.clone(),
                    mount: mount_path.trim_matches('/').to_owned(),
                },
                None,
            ),
            _ => return Err(KmsError::configuration("backend_config.auth_method", "unsupported auth method")),
        };
        let auth = Arc::new(Self {
            transport,
            method,
            current: RwLock::new(session),
            gate: tokio::sync::Mutex::new(Gate::default()),
            renewer: std::sync::Mutex::new(None),
        });
        if matches!(auth.method, Method::AppRole { .. }) {
            auth.refresh(None).await?;
            let task = tokio::spawn(renew_loop(Arc::downgrade(&auth)));
            *auth.renewer.lock().expect("renewer lock") = Some(task);
        }
        Ok(auth)
    }

    /// A session whose token is not about to expire; logs in first when needed.
    pub(crate) async fn session(&self) -> Result<Arc<Session>, KmsError> {
        let now = Instant::now();
        if let Some(s) = self.current.read().expect("session lock").as_ref().filter(|s| s.usable(now)) {
            return Ok(s.clone());
        }
        self.refresh(None).await
    }

    /// Stops the renewal task.
    pub(crate) fn close(&self) {
        if let Some(task) = self.renewer.lock().expect("renewer lock").take() {
            task.abort();
        }
    }

    /// Replaces the session by a fresh login, unless another caller already did (or, when
    /// `stale` is given, unless the current session is no longer that one).
    async fn refresh(&self, stale: Option<&Arc<Session>>) -> Result<Arc<Session>, KmsError> {
        let Method::AppRole { role_id, secret_id, mount } = &self.method else {
            return Err(KmsError::Unauthorized { message: "the vault token has expired".into(), source: None });
        };
        let mut gate = self.gate.lock().await;
        let now = Instant::now();
        if let Some(s) = self.current.read().expect("session lock").as_ref() {
            let replaced = stale.is_some_and(|old| !Arc::ptr_eq(old, s));
            if (stale.is_none() || replaced) && s.usable(now) {
                return Ok(s.clone());
            }
        }
        if let (Some(retry_at), Some((class, message))) = (gate.retry_at, &gate.last_error)
            && now < retry_at
        {
            return Err(login_error(*class, format!("{message} (next login attempt in {:?})", retry_at - now)));
        }
        let result = self.login(mount, role_id, secret_id).await;
        match result {
            Ok(info) => {
                gate.failures = 0;
                gate.retry_at = None;
                gate.last_error = None;
                self.transport.counters.logins.fetch_add(1, Ordering::Relaxed);
                let session = Arc::new(self.session_for(info.token, info.lease_duration, info.renewable));
                *self.current.write().expect("session lock") = Some(session.clone());
                Ok(session)
            }
            Err(e) => {
                let class = e.class();
                gate.failures += 1;
                // A cluster that is electing a leader (or a node that is down) answers again
                // within seconds: back off briefly, still one login at a time. Refusals and
                // other failures back off up to 30 s.
                let (min, max) = match class {
                    Class::NodeDown | Class::NoLeader => (AVAILABILITY_BACKOFF_MIN, AVAILABILITY_BACKOFF_MAX),
                    _ => (LOGIN_BACKOFF_MIN, LOGIN_BACKOFF_MAX),
                };
                gate.retry_at = Some(now + backoff(gate.failures, min, max));
                let message = format!("AppRole login at auth/{mount} failed: {e}");
                tracing::warn!(failures = gate.failures, "{message}");
                gate.last_error = Some((class, message.clone()));
                Err(login_error(class, message))
            }
        }
    }

    /// One AppRole login (a storage write: a standby forwards it to the active node).
    async fn login(&self, mount: &str, role_id: &str, secret_id: &SecretString) -> Result<Lease, CallError> {
        let body = zeroize::Zeroizing::new(
            serde_json::to_vec(&json!({ "role_id": role_id, "secret_id": secret_id.expose_secret() }))
                .map_err(|e| CallError::Decode(e.to_string()))?,
        );
        let path = format!("auth/{mount}/login");
        let reply =
            self.transport.call(None, Route::Active, transport::Method::Post, &path, &[], Some(body.to_vec())).await?;
        lease_of(reply)
    }

    fn session_for(&self, token: SecretString, lease_secs: u64, renewable: bool) -> Session {
        let now = Instant::now();
        let lease = Duration::from_secs(lease_secs);
        let (usable_until, renew_at) = if lease.is_zero() {
            (None, None)
        } else {
            (Some(now + lease - safety_margin(lease)), Some(now + lease * 2 / 3))
        };
        Session { token, usable_until, renew_at, lease, renewable }
    }

    /// Renews the current token in place; `Ok(false)` when it should be replaced by a login.
    async fn renew(&self, session: &Arc<Session>) -> bool {
        if !session.renewable || session.lease.is_zero() {
            return false;
        }
        let body = json!({ "increment": format!("{}s", session.lease.as_secs()) }).to_string().into_bytes();
        let reply = self
            .transport
            .call(
                Some(&session.token),
                Route::Active,
                transport::Method::Post,
                "auth/token/renew-self",
                &[],
                Some(body),
            )
            .await
            .and_then(lease_of);
        match reply {
            // A lease cut short by the max TTL is not worth keeping: log in for a full one.
            Ok(info) if Duration::from_secs(info.lease_duration) * 2 >= session.lease => {
                let renewed = Arc::new(self.session_for(session.token.clone(), info.lease_duration, info.renewable));
                let mut current = self.current.write().expect("session lock");
                if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, session)) {
                    *current = Some(renewed);
                }
                self.transport.counters.renewals.fetch_add(1, Ordering::Relaxed);
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::debug!(error = %e, "token renewal failed; logging in again");
                false
            }
        }
    }
}

/// The `auth` part of a login or renewal reply.
struct Lease {
    token: SecretString,
    lease_duration: u64,
    renewable: bool,
}

fn lease_of(reply: Option<Value>) -> Result<Lease, CallError> {
    let mut reply = reply.ok_or_else(|| CallError::Decode("empty auth reply".into()))?;
    let auth = reply.get_mut("auth").map(Value::take).unwrap_or(Value::Null);
    let token = match auth.get("client_token") {
        Some(Value::String(t)) => SecretString::new(t.clone()),
        _ => return Err(CallError::Decode("auth reply without client_token".into())),
    };
    let mut auth = auth;
    if let Some(Value::String(t)) = auth.get_mut("client_token") {
        zeroize::Zeroize::zeroize(t);
    }
    Ok(Lease {
        token,
        lease_duration: auth.get("lease_duration").and_then(Value::as_u64).unwrap_or(0),
        renewable: auth.get("renewable").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// A failed (or backed-off) login as the caller sees it; the class travels with it, so the
/// manager retries an election-time failure for the budget like any other call.
fn login_error(class: Class, message: String) -> KmsError {
    if class.retryable() {
        let source = CallError::Login { class, message: message.clone() };
        KmsError::backend_with_source(message, true, source)
    } else {
        KmsError::Unauthorized { message, source: None }
    }
}

/// Renews (or replaces) the AppRole token before it expires, for as long as the backend lives.
async fn renew_loop(auth: Weak<Auth>) {
    loop {
        let (session, renew_at) = {
            let Some(auth) = auth.upgrade() else { return };
            let current = auth.current.read().expect("session lock").clone();
            match current {
                Some(s) => {
                    let at = s.renew_at;
                    (Some(s), at)
                }
                None => (None, None),
            }
        };
        match (session, renew_at) {
            (Some(session), Some(at)) => {
                tokio::time::sleep_until(at).await;
                let Some(auth) = auth.upgrade() else { return };
                if !auth.renew(&session).await && auth.refresh(Some(&session)).await.is_err() {
                    // `refresh` set the back-off; wait it out before trying again.
                    let wait = auth.gate.lock().await.retry_at.map_or(LOGIN_BACKOFF_MIN, |t| t - Instant::now());
                    drop(auth);
                    tokio::time::sleep(wait.max(Duration::from_millis(100))).await;
                }
            }
            // A token without expiry needs no renewal; no token yet: try a login.
            (Some(_), None) => return,
            (None, _) => {
                let Some(auth) = auth.upgrade() else { return };
                if auth.refresh(None).await.is_err() {
                    let wait = auth.gate.lock().await.retry_at.map_or(LOGIN_BACKOFF_MIN, |t| t - Instant::now());
                    drop(auth);
                    tokio::time::sleep(wait.max(Duration::from_millis(100))).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_cluster_backs_logins_off_briefly_not_for_30_seconds() {
        let config = kms_types::config::VaultConfig {
            address: "http://127.0.0.1:1,http://127.0.0.1:2".into(),
            auth_method: VaultAuthMethod::app_role("role", "secret"),
            namespace: None,
            mount_path: "transit".into(),
            kv_mount: "secret".into(),
            key_path_prefix: "kms/keys".into(),
            tls: None,
        };
        let transport = Arc::new(Transport::new(&config, Duration::from_secs(1)).unwrap());
        let auth = Auth {
            transport,
            method: Method::AppRole { role_id: "role".into(), secret_id: "secret".into(), mount: "approle".into() },
            current: RwLock::new(None),
            gate: tokio::sync::Mutex::new(Gate::default()),
            renewer: std::sync::Mutex::new(None),
        };
        for _ in 0..6 {
            let e = auth.refresh(None).await.unwrap_err();
            assert!(matches!(e, KmsError::Backend { retryable: true, .. }), "{e:?}");
            assert_eq!(crate::classify::class_of(&e), Class::NodeDown, "the manager moves on, for the budget");
            let wait = auth.gate.lock().await.retry_at.unwrap() - Instant::now();
            assert!(wait <= AVAILABILITY_BACKOFF_MAX, "{wait:?}");
            tokio::time::sleep(wait).await;
        }
        assert!(auth.gate.lock().await.failures >= 6);
    }

    #[test]
    fn safety_margin_is_a_fifth_clamped() {
        assert_eq!(safety_margin(Duration::from_secs(3)), Duration::from_millis(600));
        assert_eq!(safety_margin(Duration::from_millis(500)), Duration::from_millis(200));
        assert_eq!(safety_margin(Duration::from_secs(3600)), Duration::from_secs(10));
    }
}
