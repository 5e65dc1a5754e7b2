//! The node's HTTP(S) listener, bounded: what `axum::serve` leaves open.
//!
//! - Connections are capped in total and per client address; one over
//!   either cap is closed at once.
//! - A TLS handshake, and the headers of each request (idle keep-alive
//!   connections included), must arrive within their timeouts; headers
//!   are bounded in size; a whole request (body and handling) within the
//!   request timeout.
//! - When file descriptors run out, accepting backs off instead of
//!   spinning.
//! - Each request carries the connection's [`Peer`] (address and verified
//!   client certificate) for [`guarded`] routes, which decide who is
//!   calling *before* any extractor reads the body.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use meridian_net::Gate;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::debug;

use crate::auth::{CertIdentity, Credentials, Denied, Need, Principal};
use crate::node::ClusterError;

/// The bounds of one listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at most, all clients together.
    pub max_connections: usize,
    /// Open connections at most from one IP address.
    pub max_per_peer: usize,
    /// A TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// Each request's headers must arrive within this, counted from when
    /// the connection is ready for it (so an idle connection is closed).
    pub header_timeout: Duration,
    /// A request's headers, in bytes.
    pub max_header_bytes: usize,
    /// Reading the body and handling the request, at most (`None`: the
    /// routes bound themselves).
    pub request_timeout: Option<Duration>,
    /// What the listener is called in logs.
    pub name: &'static str,
    /// Speak HTTP/2 too: h2 by ALPN over TLS (when the TLS config offers
    /// it), prior knowledge (h2c) in the clear; HTTP/1.1 otherwise.
    pub http2: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_per_peer: 64,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            request_timeout: Some(Duration::from_secs(60)),
            name: "api",
            http2: false,
        }
    }
}

/// Whether an address is one of the cluster's members.
pub type Peers = Arc<dyn Fn(std::net::IpAddr) -> bool + Send + Sync>;

/// Connections kept for members, apart from everyone else's.
const PEER_CONNECTIONS: usize = 256;

/// The header (and handshake) timeout of a connection accepted while the
/// listener is more than half full.
const BUSY_HEADER_TIMEOUT: Duration = Duration::from_secs(1);

/// The connection a request came on.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The client certificate the TLS handshake verified.
    pub cert: Option<Arc<CertIdentity>>,
}

/// What a listener serves: an axum [`Router`], or any service of the
/// same shape (the HTTP fallback's one handler, without routing).
pub trait App:
    tower::Service<
        Request,
        Response = Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> App for S where
    S: tower::Service<
            Request,
            Response = Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Serves `app` on `listener` (TLS with `tls`) within `limits`, until the
/// process ends.
pub async fn serve<A: App>(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    app: A,
    limits: Limits,
    peers: Peers,
) {
    let limits = Arc::new(limits);
    let gate = Gate::new(limits.max_connections, limits.max_per_peer);
    // places strangers cannot take: the cluster's own members keep
    // talking (and electing) whatever a flood does to the rest
    let members = Gate::new(PEER_CONNECTIONS, limits.max_per_peer);
    let acceptor = tls.map(TlsAcceptor::from);
    let mut last_warning = None;
    loop {
        let pick = |ip: std::net::IpAddr| {
            if peers(ip) {
                &members
            } else {
                &gate
            }
        };
        let (stream, addr, admitted) =
            meridian_net::accept_with(&listener, pick, limits.name, &mut last_warning).await;
        let app = app.clone();
        let acceptor = acceptor.clone();
        // more than half full: this connection gets a short header timeout,
        // so silent connections cannot hold every place
        let limits = if gate.busy() {
            Arc::new(Limits {
                header_timeout: limits.header_timeout.min(BUSY_HEADER_TIMEOUT),
                handshake_timeout: limits.handshake_timeout.min(BUSY_HEADER_TIMEOUT),
                ..(*limits).clone()
            })
        } else {
            limits.clone()
        };
        tokio::spawn(async move {
            let _held = admitted;
            connection(stream, addr, acceptor, app, &limits).await;
        });
    }
}

async fn connection<A: App>(
    stream: TcpStream,
    addr: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    app: A,
    limits: &Limits,
) {
    let _ = stream.set_nodelay(true);
    match acceptor {
        None => {
            let peer = Peer { addr, cert: None };
            http(TokioIo::new(stream), peer, app, limits).await;
        }
        Some(acceptor) => {
            let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return debug!(%addr, %e, "TLS handshake failed"),
                Err(_) => return debug!(%addr, "TLS handshake timed out"),
            };
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|der| CertIdentity::from_der(der.as_ref()));
            let cert = match cert {
                Some(Ok(c)) => Some(Arc::new(c)),
                Some(Err(e)) => return debug!(%addr, %e, "client certificate unreadable"),
                None => None,
            };
            let peer = Peer { addr, cert };
            http(TokioIo::new(tls), peer, app, limits).await;
        }
    }
}

/// Requests on one connection: at most one at a time on HTTP/1.1, at
/// most `MAX_STREAMS` at once on HTTP/2.
async fn http<I, A: App>(io: TokioIo<I>, peer: Peer, app: A, limits: &Limits)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let request_timeout = limits.request_timeout;
    // what the connection's requests are doing, for the watcher below
    // (HTTP/2 and HTTP/1 on the listeners that speak both)
    let activity = Arc::new(Activity::default());
    let seen = limits.http2.then(|| activity.clone());
    let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(peer.clone());
        let h2 = req.version() == axum::http::Version::HTTP_2;
        let app = app.clone();
        // an HTTP/2 stream is followed from its start (its client may
        // reset it); an HTTP/1 request is only counted, and followed once
        // it has a body to send (the connection's own timeouts bound the
        // rest)
        let handling = match &seen {
            Some(a) if h2 => Some(a.begin(true)),
            Some(a) => {
                a.moved.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => None,
        };
        let follow = match (&seen, h2) {
            (Some(a), false) => Some(a.clone()),
            _ => None,
        };
        async move {
            let handled = app.oneshot(req.map(Body::new));
            let resp = match request_timeout {
                None => match handled.await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                },
                Some(limit) => match tokio::time::timeout(limit, handled).await {
                    Ok(Ok(resp)) => resp,
                    Ok(Err(never)) => match never {},
                    Err(_) => ClusterError::Timeout(format!(
                        "the request was not completed within {} s",
                        limit.as_secs()
                    ))
                    .into_response(),
                },
            };
            // a body still to send is followed to its end: it is the
            // stream's activity (and, reset by its client first, a
            // cancellation)
            let sending = !http_body::Body::is_end_stream(resp.body());
            let guard = match (handling, follow) {
                (Some(h), _) if sending => Some(h.answering()),
                (Some(mut h), _) => {
                    h.done = true;
                    None
                }
                (None, Some(a)) if sending => Some(a.begin(false).answering()),
                (None, _) => None,
            };
            Ok::<_, std::convert::Infallible>(match guard {
                Some(guard) => resp.map(|body| Body::new(Answering { body, guard })),
                None => resp,
            })
        }
    });
    if !limits.http2 {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .keep_alive(true);
        if let Err(e) = builder.serve_connection(io, service).await {
            debug!(%e, "connection ended");
        }
        return;
    }
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        // a client that resets streams as fast as it opens them (the
        // "rapid reset" flood) is cut off
        .max_pending_accept_reset_streams(MAX_STREAMS as usize)
        .max_local_error_reset_streams(1024)
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(Duration::from_secs(10));
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    // - nothing handled, nothing sent, nothing begun for the header
    //   timeout: idle, closed gracefully (as an idle HTTP/1 one is);
    // - answers open but none moving (their client gives no window, or
    //   does not read) for three header timeouts: stalled, closed;
    // - a graceful close not done within another header timeout: closed.
    // Requests still being handled keep it open: their routes bound them.
    let idle = limits.header_timeout;
    let tick = idle / 4;
    let mut quiet = Duration::ZERO;
    let mut last = activity.now();
    let mut closing: Option<Duration> = None;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    debug!(%e, "connection ended");
                }
                return;
            }
            () = activity.cut.notified() => {
                debug!("connection cut: its client resets most streams it opens");
                return;
            }
            () = tokio::time::sleep(tick) => {
                let now = activity.now();
                if now.handling > 0 || now.moved != last.moved {
                    quiet = Duration::ZERO;
                } else {
                    quiet += tick;
                }
                last = now;
                if let Some(since) = closing.as_mut() {
                    *since += tick;
                    // HTTP/1 ends its graceful close after the request in
                    // hand, which its route bounds
                    if *since > idle && quiet >= idle && (now.h2 || now.answering > 0) {
                        debug!("connection closed: a graceful close did not finish");
                        return;
                    }
                } else if now.answering == 0 && quiet >= idle {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Duration::ZERO);
                } else if quiet >= idle * 3 {
                    debug!("connection closed: its answers stopped moving");
                    return;
                }
            }
        }
    }
}

/// Streams open at once on one HTTP/2 connection.
const MAX_STREAMS: u32 = 64;

/// Streams an HTTP/2 client may reset before their answer has been sent
/// (each may have cost an endpoint a connection) before the connection is
/// cut, once they are also a quarter of its requests; and at most, whatever
/// the share.
const MAX_CANCELLED: usize = 128;
const MAX_CANCELLED_EVER: usize = 1024;

/// What a connection's requests are doing.
#[derive(Default)]
struct Activity {
    /// Requests being handled (no answer yet).
    handling: AtomicUsize,
    /// Answers whose bodies are being sent.
    answering: AtomicUsize,
    /// Requests begun plus body frames sent: moves while anything does.
    moved: AtomicUsize,
    /// It speaks HTTP/2.
    h2: AtomicBool,
    /// HTTP/2 streams their client reset before their answer was sent.
    cancelled: AtomicUsize,
    begun: AtomicUsize,
    /// Told when the connection should be dropped.
    cut: tokio::sync::Notify,
}

/// A snapshot of [`Activity`].
#[derive(Clone, Copy)]
struct Now {
    handling: usize,
    answering: usize,
    moved: usize,
    h2: bool,
}

/// A request being handled, or its answer being sent; on drop before
/// `done`, an HTTP/2 one counts as reset by its client.
struct Handling {
    activity: Arc<Activity>,
    h2: bool,
    answering: bool,
    done: bool,
}

impl Activity {
    fn begin(self: &Arc<Self>, h2: bool) -> Handling {
        if h2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.handling.fetch_add(1, Ordering::Relaxed);
        self.begun.fetch_add(1, Ordering::Relaxed);
        self.moved.fetch_add(1, Ordering::Relaxed);
        Handling {
            activity: self.clone(),
            h2,
            answering: false,
            done: false,
        }
    }

    fn now(&self) -> Now {
        Now {
            handling: self.handling.load(Ordering::Relaxed),
            answering: self.answering.load(Ordering::Relaxed),
            moved: self.moved.load(Ordering::Relaxed),
            h2: self.h2.load(Ordering::Relaxed),
        }
    }
}

impl Handling {
    /// The answer is ready: what follows is sending its body.
    fn answering(mut self) -> Handling {
        let a = &self.activity;
        a.handling.fetch_sub(1, Ordering::Relaxed);
        a.answering.fetch_add(1, Ordering::Relaxed);
        self.answering = true;
        self
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        let a = &self.activity;
        if self.answering {
            a.answering.fetch_sub(1, Ordering::Relaxed);
        } else {
            a.handling.fetch_sub(1, Ordering::Relaxed);
        }
        if self.h2 && !self.done {
            let cancelled = a.cancelled.fetch_add(1, Ordering::Relaxed) + 1;
            let share = cancelled * 4 > a.begun.load(Ordering::Relaxed);
            if (cancelled > MAX_CANCELLED && share) || cancelled > MAX_CANCELLED_EVER {
                a.cut.notify_one();
            }
        }
    }
}

/// An answer's body, followed to its end.
struct Answering {
    body: Body,
    guard: Handling,
}

impl Drop for Answering {
    fn drop(&mut self) {
        // a body hyper had no need to poll to its end still ended
        if http_body::Body::is_end_stream(&self.body) {
            self.guard.done = true;
        }
    }
}

impl http_body::Body for Answering {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(_))) => {
                self.guard.activity.moved.fetch_add(1, Ordering::Relaxed);
            }
            // ended, or failed on this side: not the client's doing
            std::task::Poll::Ready(None | Some(Err(_))) => self.guard.done = true,
            std::task::Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// What [`guarded`] routes know about the request: who made it.
#[derive(Clone)]
struct Guard {
    credentials: Arc<Credentials>,
    need: Need,
}

/// `router` with every route behind `need`: the caller is identified (a
/// bearer token, else the connection's client certificate) and refused
/// with 401 or 403 before anything reads the body. The handlers can take
/// the [`Principal`] as an `Extension`.
pub fn guarded<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    credentials: &Arc<Credentials>,
    need: Need,
) -> Router<S> {
    router.route_layer(axum::middleware::from_fn_with_state(
        Guard {
            credentials: credentials.clone(),
            need,
        },
        check,
    ))
}

async fn check(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    let bearer = match req.headers().get(header::AUTHORIZATION) {
        None => None,
        // the scheme is case-insensitive (RFC 9110 §11.1)
        Some(v) => match v
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        {
            Some((_, t)) => Some(t.trim().to_string()),
            None => {
                return ClusterError::Unauthorized(
                    "the Authorization header must be `Bearer TOKEN`".into(),
                )
                .into_response()
            }
        },
    };
    let cert = req.extensions().get::<Peer>().and_then(|p| p.cert.clone());
    let principal = guard
        .credentials
        .principal(bearer.as_deref(), cert.as_deref())
        .and_then(|p| p.allows(guard.need).map(|()| p));
    match principal {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(d) => denied(d).into_response(),
    }
}

/// The API error for a refusal.
pub fn denied(d: Denied) -> ClusterError {
    match d {
        Denied::Unauthenticated(m) => ClusterError::Unauthorized(m),
        Denied::Forbidden(m) => ClusterError::Forbidden(m),
    }
}

/// The principal [`guarded`] found (anonymous outside a guarded route).
pub fn principal_of(ext: &axum::http::Extensions) -> Principal {
    ext.get::<Principal>()
        .cloned()
        .unwrap_or(Principal::Anonymous)
}

/// Every refusal as a JSON error, whatever produced it: a body over its
/// route's limit is a 413 `too_large`; a body an extractor could not read
/// (malformed JSON, a wrong content type) keeps its status with the
/// extractor's message, its code named after the status.
pub async fn errors_as_json(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/json");
    if json || !(status.is_client_error()) {
        return resp;
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ClusterError::TooLarge("the request body is larger than this route accepts".into())
            .into_response();
    }
    let text = match axum::body::to_bytes(resp.into_body(), 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let text = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("bad request")
            .to_string()
    } else {
        text
    };
    ClusterError::Http {
        status: status.as_u16(),
        message: text,
    }
    .into_response()
}
