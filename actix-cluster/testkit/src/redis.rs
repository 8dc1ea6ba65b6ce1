//! A `redis-server` of a test's (or an example's) own: started on a free port of an address,
//! with no persistence, in a temporary directory, and killed when dropped.

use std::net::{IpAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` (Debian's package; `.ci/run` installs it).
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one listening on `addr` (loopback, or a bridge address other hosts reach) and
    /// waits, at most 10 s, until it accepts connections.
    pub fn start(addr: IpAddr) -> Result<Self, String> {
        let port = TcpListener::bind((addr, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a free port for redis-server: {e}"))?
            .port();
        let dir = tempfile::tempdir().map_err(|e| format!("a directory for redis-server: {e}"))?;
        let child = Command::new("redis-server")
            .args(["--bind", &addr.to_string(), "--port", &port.to_string()])
            .args(["--protected-mode", "no", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start redis-server ({e}); install it (Debian: apt install redis-server)"
                )
            })?;
        let server = RedisServer {
            child,
            url: format!("redis://{addr}:{port}/"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((addr, port)).is_err() {
            if Instant::now() > deadline {
                return Err("redis-server did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// Its URL, for `RedisStore::connect`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
