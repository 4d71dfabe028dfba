//! Request/reply servers run from the datapath's epoll loop, so requests are
//! answered between frame batches with no locks: the control socket (a Unix
//! socket, one JSON line in, one JSON reply out) and the metrics endpoint
//! (TCP, one HTTP request in, one response out). Each connection closes after
//! its reply. A slow client never blocks the loop: partial reads and writes
//! wait for the next readiness event. Bounded: a request is at most 64 KiB;
//! a connection that has not finished its request and reply within
//! [`IDLE_TIMEOUT`] is closed ([`Server::expire_idle`]); when
//! [`MAX_CLIENTS`] are open, the longest-idle request/reply connection
//! makes room, and a new one is refused if all are streams. A running
//! stream (a capture) is never evicted for a newcomer.

use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Most simultaneous connections per server.
pub const MAX_CLIENTS: usize = 64;
/// How long a request/reply connection may take from accept to its last
/// byte out; streams are exempt.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest request accepted.
const MAX_REQUEST: usize = 64 * 1024;

/// How a server knows a request is complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// One line (or everything up to EOF).
    Line,
    /// An HTTP request head, ended by an empty line.
    HttpHead,
}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(b),
            Stream::Tcp(s) => s.read(b),
        }
    }
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(b),
            Stream::Tcp(s) => s.write(b),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
}

struct Client {
    stream: Stream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    written: usize,
    replying: bool,
    /// A capture stream: written by [`Server::pump`], not replied to.
    streaming: bool,
    /// EPOLLOUT is in the interest set.
    want_out: bool,
    /// When it was accepted (its request and reply must be done within
    /// [`IDLE_TIMEOUT`]).
    since: Instant,
}

/// What a request handler does with the connection.
pub enum Outcome {
    /// Send these bytes, then close.
    Reply(Vec<u8>),
    /// Keep the connection open as a stream fed by [`Server::pump`].
    Stream,
}

/// A request/reply server; see the module docs.
pub struct Server {
    listener: Listener,
    framing: Framing,
    /// Unix socket file to remove on drop.
    path: Option<PathBuf>,
    clients: BTreeMap<u64, Client>,
    token_base: u64,
    next_id: u64,
}

/// The control socket.
pub type ControlServer = Server;

impl Server {
    /// The control socket: binds `path` (mode 0600), replacing a stale
    /// socket file. The caller holds the instance lock, so nothing live is
    /// replaced. Connection tokens start at `token_base`.
    pub fn bind_unix(path: &Path, token_base: u64) -> io::Result<Server> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(Server {
            listener: Listener::Unix(listener),
            framing: Framing::Line,
            path: Some(path.to_path_buf()),
            clients: BTreeMap::new(),
            token_base,
            next_id: 0,
        })
    }

    /// An HTTP endpoint on `addr`.
    pub fn bind_http(addr: SocketAddr, token_base: u64) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(Server {
            listener: Listener::Tcp(listener),
            framing: Framing::HttpHead,
            path: None,
            clients: BTreeMap::new(),
            token_base,
            next_id: 0,
        })
    }

    /// The TCP address actually bound (port 0 resolved), if TCP.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.listener {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(_) => None,
        }
    }

    pub fn listener_fd(&self) -> BorrowedFd<'_> {
        match &self.listener {
            Listener::Unix(l) => l.as_fd(),
            Listener::Tcp(l) => l.as_fd(),
        }
    }

    /// Whether `token` is one of this server's connections.
    pub fn owns(&self, token: u64) -> bool {
        token >= self.token_base && token < self.token_base + (1 << 32)
    }

    fn accept_one(&self) -> io::Result<Stream> {
        Ok(match &self.listener {
            Listener::Unix(l) => {
                let (mut s, _) = l.accept()?;
                // The socket file is 0600, but a descriptor can be passed
                // on: ask the kernel who is at the other end.
                let uid =
                    nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials)
                        .map(|c| c.uid())
                        .unwrap_or(u32::MAX);
                if uid != 0 {
                    let _ = s.write_all(
                        format!(
                            "{{\"ok\":false,\"error\":\"refused: uid {uid} is not root; the control socket changes the switch, so only root may use it\"}}\n"
                        )
                        .as_bytes(),
                    );
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        "peer not root",
                    ));
                }
                s.set_nonblocking(true)?;
                Stream::Unix(s)
            }
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(true)?;
                Stream::Tcp(s)
            }
        })
    }

    /// Accepts every pending connection.
    pub fn accept(&mut self, epoll: &Epoll) {
        loop {
            let stream = match self.accept_one() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    tracing::warn!("control connection refused: {e}");
                    continue;
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    return;
                }
            };
            if self.clients.len() >= MAX_CLIENTS {
                // Room is made by the longest-waiting request/reply
                // connection; streams are never evicted for a newcomer.
                let victim = self
                    .clients
                    .iter()
                    .filter(|(_, c)| !c.streaming)
                    .min_by_key(|(_, c)| c.since)
                    .map(|(&t, _)| t);
                match victim {
                    Some(t) => self.close(epoll, t),
                    None => continue, // all are streams: refuse (drop) it
                }
            }
            let token = self.token_base + self.next_id;
            self.next_id = (self.next_id + 1) % (1 << 32);
            if epoll
                .add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, token))
                .is_err()
            {
                continue;
            }
            self.clients.insert(
                token,
                Client {
                    stream,
                    inbuf: Vec::new(),
                    out: Vec::new(),
                    written: 0,
                    replying: false,
                    streaming: false,
                    want_out: false,
                    since: Instant::now(),
                },
            );
        }
    }

    /// Services connection `token`: reads its request, calls `handler` with
    /// the request bytes once complete, and writes the bytes it returns as
    /// the socket allows.
    pub fn service(&mut self, epoll: &Epoll, token: u64, handler: impl FnOnce(&[u8]) -> Outcome) {
        let framing = self.framing;
        let Some(c) = self.clients.get_mut(&token) else {
            return;
        };
        if c.streaming {
            return; // the event loop pumps streams
        }
        if !c.replying {
            let mut eof = false;
            let mut chunk = [0u8; 4096];
            loop {
                match c.stream.read(&mut chunk) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => c.inbuf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        self.close(epoll, token);
                        return;
                    }
                }
                if c.inbuf.len() > MAX_REQUEST {
                    break;
                }
            }
            let end = match framing {
                Framing::Line => c.inbuf.iter().position(|&b| b == b'\n'),
                Framing::HttpHead => c.inbuf.windows(4).position(|w| w == b"\r\n\r\n"),
            };
            let request: &[u8] = match end {
                Some(e) => &c.inbuf[..e],
                None if c.inbuf.len() > MAX_REQUEST || (eof && !c.inbuf.is_empty()) => &c.inbuf,
                None if eof => {
                    self.close(epoll, token);
                    return;
                }
                None => return, // wait for the rest
            };
            match handler(request) {
                Outcome::Reply(out) => c.out = out,
                Outcome::Stream => {
                    c.streaming = true;
                    c.inbuf = Vec::new();
                    let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
                    let _ = epoll.modify(&c.stream, &mut EpollEvent::new(flags, token));
                    return;
                }
            }
            c.replying = true;
            let _ = epoll.modify(&c.stream, &mut EpollEvent::new(EpollFlags::EPOLLOUT, token));
        }
        loop {
            match c.stream.write(&c.out[c.written..]) {
                Ok(n) => {
                    c.written += n;
                    if c.written == c.out.len() {
                        self.close(epoll, token);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close(epoll, token);
                    return;
                }
            }
        }
    }

    /// Feeds a stream connection: writes what it can of `data` (removing
    /// what was written) and notices a reader that went away. Returns
    /// whether the connection is still open. Never blocks.
    pub fn pump(&mut self, epoll: &Epoll, token: u64, data: &mut VecDeque<u8>) -> bool {
        let Some(c) = self.clients.get_mut(&token) else {
            return false;
        };
        let mut chunk = [0u8; 512];
        loop {
            match c.stream.read(&mut chunk) {
                Ok(0) => {
                    self.close(epoll, token);
                    return false;
                }
                Ok(_) => {} // a stream reader has nothing to say; ignore
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(epoll, token);
                    return false;
                }
            }
        }
        let mut blocked = false;
        while !data.is_empty() {
            let (a, _) = data.as_slices();
            match c.stream.write(a) {
                Ok(n) => {
                    data.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(epoll, token);
                    return false;
                }
            }
        }
        if blocked != c.want_out {
            c.want_out = blocked;
            let mut flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
            if blocked {
                flags |= EpollFlags::EPOLLOUT;
            }
            let _ = epoll.modify(&c.stream, &mut EpollEvent::new(flags, token));
        }
        true
    }

    /// Closes connection `token` (a finished stream).
    pub fn finish(&mut self, epoll: &Epoll, token: u64) {
        self.close(epoll, token);
    }

    /// Closes request/reply connections older than [`IDLE_TIMEOUT`] (silent
    /// or slow clients); returns how many. Streams are left alone.
    pub fn expire_idle(&mut self, epoll: &Epoll, now: Instant) -> usize {
        let old: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| !c.streaming && now.duration_since(c.since) > IDLE_TIMEOUT)
            .map(|(&t, _)| t)
            .collect();
        for &t in &old {
            self.close(epoll, t);
        }
        old.len()
    }

    fn close(&mut self, epoll: &Epoll, token: u64) {
        if let Some(c) = self.clients.remove(&token) {
            let _ = epoll.delete(&c.stream);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}
