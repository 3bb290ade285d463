//! The listener: accepts connections (TLS optional) under a connection cap and a per-peer cap,
//! serves HTTP/1.1 with keep-alive, a header-read timeout and a response-write timeout
//! (`conn_limits`), and shuts down gracefully, draining in-flight requests.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::app::App;
use crate::config::ServerConfig;
use crate::conn_limits::{PeerLimiter, WriteTimeout};
use crate::setup_error::SetupError;

/// A bound, not yet running, admin server.
pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
    tls: Option<TlsAcceptor>,
    header_read_timeout: Duration,
    max_connections: usize,
    max_connections_per_peer: usize,
    response_write_timeout: Duration,
    shutdown_grace: Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `config.listen` (TLS per `config.tls`) to serve `app`.
    pub async fn bind(config: &ServerConfig, app: Arc<App>) -> Result<Self, SetupError> {
        let listener =
            Self::listen(config).await.map_err(|source| SetupError::Listen { addr: config.listen, source })?;
        Self::on_listener(listener, config, app)
    }

    /// Binds `config.listen` only. A caller that must not create any state when the address
    /// is taken (`kms serve`) binds first, then builds its [`App`] and calls [`Self::on_listener`].
    pub async fn listen(config: &ServerConfig) -> std::io::Result<TcpListener> {
        TcpListener::bind(config.listen).await
    }

    /// Serves `app` on a listener from [`Self::listen`] (TLS per `config.tls`).
    pub fn on_listener(listener: TcpListener, config: &ServerConfig, app: Arc<App>) -> Result<Self, SetupError> {
        config.validate()?;
        if config.tls.is_none() && !config.listen.ip().is_loopback() {
            tracing::warn!(listen = %config.listen, "serving plain HTTP on a non-loopback address (allow_insecure_http)");
        }
        let tls = config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
        Ok(Self {
            listener,
            app,
            tls,
            header_read_timeout: config.header_read_timeout,
            max_connections: config.max_connections,
            max_connections_per_peer: config.max_connections_per_peer,
            response_write_timeout: config.response_write_timeout,
            shutdown_grace: config.shutdown_grace,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Whether the server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets every in-flight request
    /// finish (at most `shutdown_grace`) and returns.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let graceful = GracefulShutdown::new();
        let permits = Arc::new(Semaphore::new(self.max_connections));
        let peers = PeerLimiter::new(self.max_connections_per_peer);
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                () = &mut shutdown => break,
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let (stream, remote) = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // A peer at its cap is turned away at once, so it cannot hold the shared slots.
            let Some(peer_slot) = peers.admit(remote.ip()) else {
                tracing::debug!(%remote, "connection refused: this peer holds max_connections_per_peer");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let stream = WriteTimeout::new(stream, self.response_write_timeout);
            let app = self.app.clone();
            let builder = {
                let mut b = http1::Builder::new();
                b.timer(TokioTimer::new()).header_read_timeout(self.header_read_timeout).keep_alive(true);
                b
            };
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.handle(req, remote).await) }
            });
            let metrics_app = self.app.clone();
            metrics_app.metrics().connection_opened();
            match &self.tls {
                None => {
                    let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        if let Err(err) = conn.await {
                            tracing::debug!(error = %err, %remote, "connection ended with an error");
                        }
                        metrics_app.metrics().connection_closed();
                        drop((permit, peer_slot));
                    });
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    let handshake_timeout = self.header_read_timeout;
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                let conn = watcher.watch(builder.serve_connection(TokioIo::new(tls), service));
                                if let Err(err) = conn.await {
                                    tracing::debug!(error = %err, %remote, "connection ended with an error");
                                }
                            }
                            Ok(Err(err)) => tracing::debug!(error = %err, %remote, "TLS handshake failed"),
                            Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                        }
                        metrics_app.metrics().connection_closed();
                        drop((permit, peer_slot));
                    });
                }
            }
        }
        drop(self.listener);
        tracing::info!("shutting down: draining in-flight requests");
        if tokio::time::timeout(self.shutdown_grace, graceful.shutdown()).await.is_err() {
            tracing::warn!(grace = ?self.shutdown_grace, "connections still open after the grace period");
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
