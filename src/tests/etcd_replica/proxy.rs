//! A TCP proxy on 127.0.0.1 that a test can cut and restore: a network
//! partition between one replica and its etcd, while the test's own client
//! still reaches the server directly.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

struct State {
    /// Whether connections pass; while cut, new ones are closed at once.
    open: AtomicBool,
    /// Ends the accept loop.
    stopped: AtomicBool,
    /// Both ends of every live connection, to sever them on a cut.
    live: Mutex<Vec<TcpStream>>,
}

pub struct Proxy {
    address: SocketAddr,
    state: Arc<State>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `target`.
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let address = listener.local_addr().expect("proxy address");
        let state = Arc::new(State {
            open: AtomicBool::new(true),
            stopped: AtomicBool::new(false),
            live: Mutex::new(Vec::new()),
        });
        let shared = Arc::clone(&state);
        let acceptor = thread::spawn(move || accept(listener, target, &shared));
        Proxy {
            address,
            state,
            acceptor: Some(acceptor),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Severs every connection and refuses new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.state.open.store(false, Ordering::SeqCst);
        for stream in self.state.live.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.state.open.store(true, Ordering::SeqCst);
    }
}

fn accept(listener: TcpListener, target: SocketAddr, state: &State) {
    while !state.stopped.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(_) => continue,
        };
        if !state.open.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let _ = client.set_nonblocking(false);
        let Ok(server) = TcpStream::connect(target) else {
            continue;
        };
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        state.live.lock().unwrap().extend([c3, s3]);
        thread::spawn(move || pipe(client, server));
        thread::spawn(move || pipe(s2, c2));
    }
}

/// Copies `from` to `to` until either side closes, then closes both.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        self.cut();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}
