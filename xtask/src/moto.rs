//! moto, the Python mock of AWS services, as the outside baseline of `cargo xtask bench aws`:
//! installed into `.tools/python` by [`pytools`](crate::pytools) (`moto[server]`, never into
//! the user's Python), started as `python -S -m moto.server` on a free loopback port, and
//! stopped when the [`MotoServer`] is dropped. The bench gets its URL in `KMS_BENCH_MOTO_URL`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::pytools::{Package, PythonTools};

/// What the moto server needs (`moto.server` imports Flask and Werkzeug, the `server` extra).
pub(crate) const MOTO: &[Package] = &[Package { requirement: "moto[server]>=5,<6", module: "moto.server" }];

/// The environment variable the bench reads the server's URL from.
pub(crate) const URL_VAR: &str = "KMS_BENCH_MOTO_URL";

/// How long moto gets to start listening (Python imports its services lazily, but the server
/// module alone takes a few seconds on a busy machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `moto.server` child, killed on drop.
pub(crate) struct MotoServer {
    child: Child,
    addr: SocketAddr,
}

impl MotoServer {
    /// Installs moto if it is missing and starts it on a free port of 127.0.0.1; returns once
    /// it accepts connections.
    pub(crate) fn start(root: &Path) -> Result<Self, String> {
        let tools = PythonTools::ensure(root, MOTO)?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let child = tools
            .command()
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start moto.server: {e}"))?;
        // From here on, dropping the server stops the child, whichever way this returns.
        let mut server = Self { child, addr };
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("moto.server exited before listening ({status})"));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!("moto.server did not listen on {addr} within {} s", START_TIMEOUT.as_secs()))
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
