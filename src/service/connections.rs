//! Admission of client connections, before gRPC sees them.
//!
//! Takes: the listening socket and the [`ConnectionLimits`]. Gives: a stream
//! of accepted connections for the server to serve.
//!
//! Guarantees:
//! - At most `max_connections` are open at once (and never more than the
//!   process's open-file limit leaves room for), so a flood of connections
//!   cannot take the descriptors the state and the logs need.
//! - A connection must send its greeting (the first [`GREETING_BYTES`]
//!   bytes: the HTTP/2 preface, a TLS hello or an HTTP/1.1 request line)
//!   within `handshake_timeout`, or it is closed. When the limit is reached,
//!   the oldest connection still waiting to greet is closed to make room:
//!   silent connections cannot lock out callers that speak.
//! - Connections that greeted are watched by HTTP/2 pings (set on the
//!   server, not here): a peer that stops answering is closed.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::config::ConnectionLimits;

/// Bytes a connection must send before it counts as greeted: the length of
/// the HTTP/2 client preface, shorter than any TLS hello or HTTP/1.1
/// request.
const GREETING_BYTES: usize = 24;

/// Descriptors kept free for the state, log files, policies and models.
const RESERVED_DESCRIPTORS: u64 = 128;

/// After an accept error (the process is out of descriptors, say), wait
/// this long before the next accept instead of spinning.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The most connections the process can hold: the configured limit, or
/// fewer when the open-file limit (raised to its hard limit if needed)
/// leaves less room.
fn effective_max_connections(configured: usize) -> usize {
    let wanted = configured as u64 + RESERVED_DESCRIPTORS;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct given.
    let available = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return configured;
        }
        if limit.rlim_cur < wanted && limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: wanted.min(limit.rlim_max),
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = raised.rlim_cur;
            }
        }
        limit.rlim_cur
    };
    let room = available.saturating_sub(RESERVED_DESCRIPTORS).max(1);
    if room < configured as u64 {
        tracing::warn!(
            configured,
            open_file_limit = available,
            effective = room,
            "max_connections lowered to what the open-file limit leaves room for"
        );
    }
    configured.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// Accepted connections, admitted under the limits.
pub struct Incoming {
    listener: TcpListener,
    admission: Arc<Admission>,
    handshake_timeout: Duration,
    retry: Option<Pin<Box<Sleep>>>,
}

impl Incoming {
    pub fn new(listener: TcpListener, limits: &ConnectionLimits) -> Incoming {
        Incoming {
            listener,
            admission: Arc::new(Admission {
                max_connections: effective_max_connections(limits.max_connections),
                open: AtomicUsize::new(0),
                waiting_to_greet: Mutex::new(VecDeque::new()),
                last_refusal_logged: Mutex::new(None),
            }),
            handshake_timeout: limits.handshake_timeout,
            retry: None,
        }
    }
}

impl tokio_stream::Stream for Incoming {
    type Item = io::Result<Connection>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(retry) = &mut self.retry {
                std::task::ready!(retry.as_mut().poll(cx));
                self.retry = None;
            }
            match std::task::ready!(self.listener.poll_accept(cx)) {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    if let Some(connection) = self.admission.admit(stream, self.handshake_timeout) {
                        return Poll::Ready(Some(Ok(connection)));
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed; retrying shortly");
                    self.retry = Some(Box::pin(tokio::time::sleep(ACCEPT_RETRY)));
                }
            }
        }
    }
}

/// Counts open connections and remembers, oldest first, those that have
/// not greeted yet.
struct Admission {
    max_connections: usize,
    open: AtomicUsize,
    waiting_to_greet: Mutex<VecDeque<Weak<Greeting>>>,
    last_refusal_logged: Mutex<Option<Instant>>,
}

impl Admission {
    fn admit(
        self: &Arc<Self>,
        stream: TcpStream,
        handshake_timeout: Duration,
    ) -> Option<Connection> {
        let greeting = Arc::new(Greeting::default());
        {
            let mut waiting = crate::service::lock(&self.waiting_to_greet);
            if self.open.load(Ordering::SeqCst) >= self.max_connections
                && !self.close_oldest_silent(&mut waiting)
            {
                drop(waiting);
                self.log_refusal();
                return None;
            }
            if waiting.len() >= 2 * self.max_connections {
                waiting.retain(|entry| entry.upgrade().is_some_and(|g| g.is_waiting()));
            }
            waiting.push_back(Arc::downgrade(&greeting));
        }
        self.open.fetch_add(1, Ordering::SeqCst);
        Some(Connection {
            stream,
            greeting,
            bytes_before_greeting: 0,
            deadline: Some(Box::pin(tokio::time::sleep(handshake_timeout))),
            admission: self.clone(),
        })
    }

    /// Closes the oldest connection still waiting to greet and gives back
    /// its slot; false if none is waiting.
    fn close_oldest_silent(&self, waiting: &mut VecDeque<Weak<Greeting>>) -> bool {
        while let Some(entry) = waiting.pop_front() {
            if let Some(greeting) = entry.upgrade()
                && greeting.is_waiting()
            {
                greeting.close();
                self.release(&greeting);
                return true;
            }
        }
        false
    }

    fn release(&self, greeting: &Greeting) {
        if !greeting.released.swap(true, Ordering::SeqCst) {
            self.open.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn log_refusal(&self) {
        let mut last = crate::service::lock(&self.last_refusal_logged);
        if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(
                max_connections = self.max_connections,
                "connection refused: max_connections open, every one of them greeted"
            );
        }
    }
}

/// A connection's standing before it greets, shared with the admission.
#[derive(Default)]
struct Greeting {
    greeted: AtomicBool,
    closed: AtomicBool,
    /// Its slot was given back (closed to make room, or dropped).
    released: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Greeting {
    fn is_waiting(&self) -> bool {
        !self.greeted.load(Ordering::SeqCst) && !self.closed.load(Ordering::SeqCst)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(waker) = crate::service::lock(&self.waker).take() {
            waker.wake();
        }
    }
}

/// One admitted connection: a TCP stream that fails its reads once it is
/// closed to make room or its greeting is late.
pub struct Connection {
    stream: TcpStream,
    greeting: Arc<Greeting>,
    bytes_before_greeting: usize,
    /// Until the greeting arrives.
    deadline: Option<Pin<Box<Sleep>>>,
    admission: Arc<Admission>,
}

impl Connection {
    fn check_greeting(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(deadline) = &mut self.deadline else {
            return Ok(());
        };
        *crate::service::lock(&self.greeting.waker) = Some(cx.waker().clone());
        if self.greeting.closed.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room: max_connections reached before this connection greeted",
            ));
        }
        if deadline.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no greeting within handshake_timeout",
            ));
        }
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.admission.release(&self.greeting);
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check_greeting(cx)?;
        let filled = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if self.deadline.is_some() && matches!(read, Poll::Ready(Ok(()))) {
            self.bytes_before_greeting += buf.filled().len() - filled;
            if self.bytes_before_greeting >= GREETING_BYTES {
                self.greeting.greeted.store(true, Ordering::SeqCst);
                self.deadline = None;
            }
        }
        read
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}
