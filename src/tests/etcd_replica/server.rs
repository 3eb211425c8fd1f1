//! A real etcd server for one test: its own process, free ports on 127.0.0.1,
//! a temporary data directory (in /dev/shm when there is one: etcd fsyncs every
//! write). The test can kill and restart it; dropping it kills it and removes
//! the directory.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a server gets to answer its health check after (re)starting.
const READY_WITHIN: Duration = Duration::from_secs(30);

pub struct EtcdServer {
    binary: PathBuf,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    extra: Vec<String>,
    child: Option<Child>,
}

/// The etcd binary: `$ETCD_BIN`, else `etcd` on `PATH`. The `etcd` feature's
/// tests need a real server, so a missing one fails the test with directions.
fn etcd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ETCD_BIN") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "ETCD_BIN={} is not a file", path.display());
        return path;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no etcd server binary: the `etcd` feature's tests run against a real etcd. \
                 Install Debian's package (`apt-get install etcd-server`) or set ETCD_BIN \
                 to an etcd binary (.ci/run installs it)."
            )
        })
}

/// A port nobody listens on right now (the kernel's pick; etcd binds it a
/// moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn temp_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = base.join(format!(
        "readmostly-etcd-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).expect("create the server's temporary directory");
    dir
}

impl EtcdServer {
    /// Starts a single-member etcd and waits until it is healthy.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// As [`start`](Self::start), with extra command-line flags.
    pub async fn start_with(extra: &[&str]) -> Self {
        let mut server = EtcdServer {
            binary: etcd_binary(),
            dir: temp_dir(),
            client_port: 0,
            peer_port: 0,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        // A port found free may be taken before etcd binds it (another test
        // picks ports at the same time): try fresh ones.
        let mut failures = Vec::new();
        for _ in 0..3 {
            server.client_port = free_port();
            server.peer_port = free_port();
            match server.spawn().await {
                Ok(()) => return server,
                Err(failure) => failures.push(failure),
            }
            let _ = fs::remove_dir_all(server.dir.join("data"));
        }
        panic!("etcd did not start: {failures:#?}");
    }

    /// The client URL, on 127.0.0.1.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client address (for a proxy in front of it).
    pub fn address(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.client_port).into()
    }

    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint()], None)
            .await
            .expect("connect to the test's etcd")
    }

    /// Kills the server (SIGKILL: a crash, not a clean stop) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the killed server again on the same ports and data.
    pub async fn restart(&mut self) {
        self.kill();
        if let Err(failure) = self.spawn().await {
            panic!("etcd did not restart: {failure}");
        }
    }

    /// Starts etcd and waits until it is healthy; on failure, says why.
    async fn spawn(&mut self) -> Result<(), String> {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let client = self.endpoint();
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .expect("open the server log");
        let child = Command::new(&self.binary)
            .args(["--name", "test"])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}")])
            .args(["--heartbeat-interval", "20", "--election-timeout", "200"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        while !self.healthy() {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(format!("etcd exited with {status}; log:\n{}", self.log()));
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!(
                    "etcd not healthy within {READY_WITHIN:?}; log:\n{}",
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    /// One plain HTTP GET to the client port.
    fn http_get(&self, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect(self.address()).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        Some(response)
    }

    fn healthy(&self) -> bool {
        self.http_get("/health")
            .is_some_and(|r| r.contains("\"health\":\"true\""))
    }

    /// A gauge or counter from the server's Prometheus metrics (0 if absent).
    pub fn metric(&self, name: &str) -> f64 {
        let metrics = self.http_get("/metrics").unwrap_or_default();
        metrics
            .lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (key, value) = line.split_once(' ')?;
                (key == name).then(|| value.trim().parse().ok()).flatten()
            })
            .unwrap_or(0.0)
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
