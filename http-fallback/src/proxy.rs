//! Proxy mode: a request for a record with `http: proxy` is forwarded to
//! the endpoint steering chose, at the endpoint's own address, and the
//! answer streamed back.
//!
//! - **Where:** the endpoint's `proxy_url` (`http(s)://host[:port]`) gives
//!   the scheme, the port, the TLS name (verified against the system's
//!   roots or `http.proxy.ca_file`) and, with `proxy_host: endpoint`, the
//!   `Host`; the connection goes to the endpoint's address, never to
//!   whatever the name resolves to.
//! - **Headers:** hop-by-hop headers (and those `Connection` names) are
//!   dropped both ways. `X-Forwarded-For`, `X-Forwarded-Host`,
//!   `X-Forwarded-Proto` and `Forwarded` describe the client; what a
//!   client that is not a trusted proxy sent in them is replaced, never
//!   passed on. `Via` is added both ways.
//! - **Bodies** stream both ways through [`Bounded`]: nothing is buffered
//!   beyond hyper's own buffers, a request body is cut at
//!   `max_body_bytes` (413), and a body that moves nothing for
//!   `idle_timeout` is cut.
//! - **Retries:** an idempotent method (GET, HEAD, OPTIONS, TRACE, PUT,
//!   DELETE) whose endpoint cannot be connected to, or that has no body
//!   and gets 502, 503 or 504, goes to the next candidate — the pipeline
//!   run again without the endpoints that failed — up to `attempts`
//!   endpoints and within `timeout`. Any other method (POST above all) is
//!   sent once: a failure is a 502.
//! - **Connections** to endpoints are pooled per address and TLS name and
//!   bounded in number (`max_connections`, idle ones included); idle ones
//!   close after `idle_timeout`.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use meridian_config::node::ProxyConfig;
use meridian_config::zone::{Endpoint, EndpointAddress};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tracing::debug;

/// Where one endpoint is proxied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The endpoint's address and the URL's port.
    pub addr: SocketAddr,
    /// The TLS name, for `https`.
    pub tls: Option<ServerName<'static>>,
    /// `host[:port]` of the URL: the `Host` when it is rewritten.
    pub authority: String,
}

impl Upstream {
    /// `e`'s upstream: its `proxy_url` at its address (default
    /// `http://ADDRESS`). `None` for an endpoint that is a name.
    pub fn of(e: &Endpoint) -> Option<Upstream> {
        let EndpointAddress::Ip(ip) = e.address else {
            return None;
        };
        let bracketed = |ip: IpAddr| match ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        };
        let Some(url) = &e.proxy_url else {
            return Some(Upstream {
                addr: SocketAddr::new(ip, 80),
                tls: None,
                authority: bracketed(ip),
            });
        };
        // validated by config::zone::rules::proxy_url_problem
        let (https, rest) = match url.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, url.strip_prefix("http://")?),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (h, p.parse::<u16>().ok()?),
            _ => (authority, if https { 443 } else { 80 }),
        };
        let tls = if https {
            let name = host.trim_start_matches('[').trim_end_matches(']');
            Some(ServerName::try_from(name.to_string()).ok()?)
        } else {
            None
        };
        Some(Upstream {
            addr: SocketAddr::new(ip, port),
            tls,
            authority: authority.to_string(),
        })
    }
}

/// One endpoint to try: what the pipeline chose.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its place in the pool, excluded when the pipeline runs again.
    pub index: u16,
    pub id: String,
    /// What `X-Meridian-Endpoint` says of it: the id, and why.
    pub label: String,
    pub upstream: Upstream,
    /// Send the upstream's authority as `Host` (else the client's).
    pub rewrite_host: bool,
}

/// Connections to endpoints, pooled and bounded.
pub struct Proxy {
    config: ProxyConfig,
    tls: tokio_rustls::TlsConnector,
    idle: Pool,
    permits: Arc<Semaphore>,
    clients: Clients,
}

/// The idle connections, shared with the answers' bodies that give their
/// connection back when they end.
type Pool = Arc<Mutex<Idle>>;

type Key = (SocketAddr, Option<ServerName<'static>>);

#[derive(Default)]
struct Idle {
    conns: HashMap<Key, Vec<Pooled>>,
    swept: Option<Instant>,
}

struct Pooled {
    send: SendRequest<Body>,
    lease: Arc<Lease>,
    since: Instant,
}

/// What a connection's watchdog sees of its use. A connection serves one
/// exchange at a time and is pooled again only once its answer's body has
/// ended, so all of this is about one exchange:
/// - an answer that stops moving (its client stopped reading, so nothing
///   polls its body and no body timer can fire) has its connection
///   dropped after one to one and a half `idle_timeout`s, as nginx's
///   `send_timeout` does: the endpoint's connection and its permit come
///   back whatever the client does;
/// - a connection idle in the pool that long is closed;
/// - `cut` drops the connection at once (an answer ended while its
///   request's body was still coming: nginx closes those too).
#[derive(Default)]
pub struct Lease {
    /// An exchange is under way (from the request to its answer's end).
    busy: AtomicBool,
    /// Its answer's body is being passed on.
    streaming: AtomicBool,
    progress: AtomicU64,
    /// Exchanges begun on it.
    uses: AtomicU64,
    cut: tokio::sync::Notify,
}

/// A connection on loan to one exchange: pooled again when its answer's
/// body has ended, and the request's too.
pub struct Checkin {
    pool: Pool,
    key: Key,
    send: SendRequest<Body>,
    lease: Arc<Lease>,
}

impl Checkin {
    fn give_back(self) {
        self.lease.busy.store(false, Ordering::Relaxed);
        let mut idle = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        idle.conns.entry(self.key).or_default().push(Pooled {
            send: self.send,
            lease: self.lease,
            since: Instant::now(),
        });
    }
}

/// Proxied requests in flight per client (an IPv6 client by its /64),
/// their answers' bodies included.
type Clients = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One client's place among [`Clients`], given back on drop.
pub struct ClientSlot {
    clients: Clients,
    key: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// Why an attempt did not produce a response.
enum Failure {
    /// No connection: the request was not sent and is given back; `true`
    /// when the attempt ran out of time.
    Connect(String, Box<Request<Body>>, bool),
    /// Sent (at least in part) and then lost.
    Sent(hyper::Error),
    /// Every upstream connection is in use.
    Busy,
}

/// What proxying a request came to: the response, and the endpoint that
/// gave it (if any did).
pub struct Proxied {
    pub response: Response<Body>,
    pub endpoint: Option<String>,
}

/// The hop-by-hop headers (RFC 9110 §7.6.1), never forwarded as they
/// are (`Trailer` is end-to-end and passes).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

impl Proxy {
    /// A proxy within `config`; its TLS roots are `config.ca_file`'s
    /// certificates, else the system's.
    pub fn new(config: ProxyConfig) -> Result<Proxy, String> {
        let mut roots = rustls::RootCertStore::empty();
        match &config.ca_file {
            Some(file) => {
                let pem = std::fs::read(file)
                    .map_err(|e| format!("http.proxy.ca_file {}: {e}", file.display()))?;
                let mut n = 0;
                for cert in rustls_pemfile_certs(&pem) {
                    let cert =
                        cert.map_err(|e| format!("http.proxy.ca_file {}: {e}", file.display()))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("http.proxy.ca_file {}: {e}", file.display()))?;
                    n += 1;
                }
                if n == 0 {
                    return Err(format!(
                        "http.proxy.ca_file {}: no certificate in it",
                        file.display()
                    ));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    let _ = roots.add(cert);
                }
            }
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Proxy {
            permits: Arc::new(Semaphore::new(config.max_connections)),
            config,
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            idle: Pool::default(),
            clients: Clients::default(),
        })
    }

    /// Forwards `req` to `first`, then to what `next` gives (the pipeline
    /// without the endpoints tried so far) while a retry is allowed.
    pub async fn forward(
        &self,
        req: Request<Body>,
        client: Client,
        mut first: Target,
        mut next: impl FnMut(&[u16]) -> Option<Target>,
        mut observe: impl FnMut(&str, Duration, Option<StatusCode>),
    ) -> Proxied {
        let started = tokio::time::Instant::now();
        let deadline = started + self.config.timeout;
        let (mut parts, body) = req.into_parts();
        // RFC 9110 §9.2.2; TRACE is never forwarded (below)
        let idempotent = matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );
        if parts.method == Method::CONNECT {
            return failed(StatusCode::NOT_IMPLEMENTED, "CONNECT is not proxied\n");
        }
        if parts.method == Method::TRACE {
            // it would reflect the forwarding headers (and any cookie) back
            return failed(StatusCode::METHOD_NOT_ALLOWED, "TRACE is not proxied\n");
        }
        if parts.method == Method::OPTIONS {
            match max_forwards(&parts.headers) {
                // this proxy is the final recipient (RFC 9110 §7.6.2)
                Some(0) => return failed(StatusCode::OK, ""),
                Some(n) => {
                    parts
                        .headers
                        .insert(header::MAX_FORWARDS, HeaderValue::from(n - 1));
                }
                None => {}
            }
        }
        // RFC 9112 §6.1: only chunked is decoded here; nothing else may be
        // passed on as if it were the body
        if !codings_are_chunked(&parts.headers) {
            return failed(
                StatusCode::NOT_IMPLEMENTED,
                "no transfer coding but chunked is taken\n",
            );
        }
        let length = match content_length(&parts.headers) {
            Ok(n) => n,
            Err(()) => return failed(StatusCode::BAD_REQUEST, "unreadable Content-Length\n"),
        };
        if length.is_some_and(|n| n > self.config.max_body_bytes) {
            return failed(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than this proxy takes\n",
            );
        }
        // the body itself says (an HTTP/2 body needs no Content-Length)
        let bodiless = http_body::Body::is_end_stream(&body);
        let Some(slot) = self.client_slot(client.steered) else {
            return failed(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many requests of this client in flight; retry shortly\n",
            );
        };
        let mut slot = Some(slot);
        let too_big = Arc::new(AtomicBool::new(false));
        let uploaded = Arc::new(AtomicBool::new(bodiless));
        let mut request_body = Bounded::new(
            body,
            self.config.max_body_bytes,
            self.config.idle_timeout,
            Some(too_big.clone()),
        );
        request_body.scrub_trailers = true;
        request_body.ended = Some(uploaded.clone());
        // hyper's HTTP/1 client stops polling once the declared length is
        // written: that is the body's end
        request_body.declared = length;
        let mut body = Some(Body::new(request_body));
        let headers = outbound_headers(&parts.headers, &client);
        let uri: Uri = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/"));
        let mut tried: Vec<u16> = Vec::new();
        loop {
            let mut request = Request::new(body.take().unwrap_or_else(Body::empty));
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = uri.clone();
            *request.version_mut() = Version::HTTP_11;
            *request.headers_mut() = headers.clone();
            let host = if first.rewrite_host {
                HeaderValue::from_str(&first.upstream.authority).ok()
            } else {
                Some(client.host.clone())
            };
            if let Some(h) = host {
                request.headers_mut().insert(header::HOST, h);
            }
            let attempt = tokio::time::Instant::now();
            let sent = tokio::time::timeout_at(deadline, self.send(&first.upstream, request)).await;
            let took = attempt.elapsed();
            tried.push(first.index);
            let retry_allowed = usize::from(self.config.attempts) > tried.len();
            match sent {
                Err(_) => {
                    observe(&first.id, took, None);
                    return failed(
                        StatusCode::GATEWAY_TIMEOUT,
                        "the endpoint did not answer in time\n",
                    )
                    .blame(&first.id, &first.label);
                }
                Ok(Ok((resp, checkin))) => {
                    let status = resp.status();
                    observe(&first.id, took, Some(status));
                    let unavailable = matches!(status.as_u16(), 502..=504);
                    if unavailable && idempotent && bodiless && retry_allowed {
                        if let Some(t) = next(&tried) {
                            debug!(endpoint = first.id, %status, next = t.id, "retrying");
                            first = t;
                            continue;
                        }
                    }
                    let loan = Loan {
                        checkin,
                        uploaded,
                        _slot: slot.take(),
                    };
                    return match self.inbound(resp, &first.label, loan) {
                        Some(response) => Proxied {
                            response,
                            endpoint: Some(first.id),
                        },
                        None => failed(
                            StatusCode::BAD_GATEWAY,
                            "the endpoint's answer cannot be passed on\n",
                        )
                        .blame(&first.id, &first.label),
                    };
                }
                Ok(Err(Failure::Busy)) => {
                    return failed(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many connections to endpoints; retry shortly\n",
                    )
                }
                Ok(Err(Failure::Connect(why, back, timed_out))) => {
                    observe(&first.id, took, None);
                    debug!(endpoint = first.id, why, "cannot connect");
                    body = Some(back.into_body());
                    if idempotent && retry_allowed {
                        if let Some(t) = next(&tried) {
                            first = t;
                            continue;
                        }
                    }
                    let failure = if timed_out {
                        failed(
                            StatusCode::GATEWAY_TIMEOUT,
                            "no connection to the endpoint in time\n",
                        )
                    } else {
                        failed(StatusCode::BAD_GATEWAY, "the endpoint cannot be reached\n")
                    };
                    return failure.blame(&first.id, &first.label);
                }
                Ok(Err(Failure::Sent(e))) => {
                    observe(&first.id, took, None);
                    if too_big.load(Ordering::Relaxed) {
                        return failed(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "the request body is larger than this proxy takes\n",
                        );
                    }
                    debug!(endpoint = first.id, %e, "the endpoint's answer was lost");
                    if idempotent && bodiless && retry_allowed {
                        if let Some(t) = next(&tried) {
                            first = t;
                            continue;
                        }
                    }
                    return failed(StatusCode::BAD_GATEWAY, "the endpoint's answer was lost\n")
                        .blame(&first.id, &first.label);
                }
            }
        }
    }

    /// Sends `req` on a pooled connection to `up`, or a new one. A pooled
    /// connection that turns out closed before the request left is
    /// replaced by a new one, once.
    async fn send(
        &self,
        up: &Upstream,
        req: Request<Body>,
    ) -> Result<(Response<hyper::body::Incoming>, Checkin), Failure> {
        let key: Key = (up.addr, up.tls.clone());
        let loan = |send, lease| Checkin {
            pool: self.idle.clone(),
            key: key.clone(),
            send,
            lease,
        };
        let req = match self.checkout(&key) {
            Some((mut send, lease)) => match send.try_send_request(req).await {
                Ok(resp) => return Ok((resp, loan(send, lease))),
                Err(mut e) => match e.take_message() {
                    Some(req) => req,
                    None => return Err(Failure::Sent(e.into_error())),
                },
            },
            None => req,
        };
        let (mut send, lease) = match self.connect(up).await {
            Ok(conn) => conn,
            Err(Some((why, timed_out))) => {
                return Err(Failure::Connect(why, Box::new(req), timed_out))
            }
            Err(None) => return Err(Failure::Busy),
        };
        lease.busy.store(true, Ordering::Relaxed);
        lease.uses.fetch_add(1, Ordering::Relaxed);
        match send.try_send_request(req).await {
            Ok(resp) => Ok((resp, loan(send, lease))),
            Err(mut e) => match e.take_message() {
                Some(req) => Err(Failure::Connect(
                    e.into_error().to_string(),
                    Box::new(req),
                    false,
                )),
                None => Err(Failure::Sent(e.into_error())),
            },
        }
    }

    /// An idle connection to `key` that is ready for a request.
    fn checkout(&self, key: &Key) -> Option<(SendRequest<Body>, Arc<Lease>)> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let max_idle = self.config.idle_timeout;
        let fresh = |p: &Pooled| !p.send.is_closed() && now.duration_since(p.since) < max_idle;
        // now and then, drop what has closed or idled out everywhere, so
        // permits come back from endpoints nobody asks for any more
        if idle
            .swept
            .is_none_or(|t| now.duration_since(t) > Duration::from_secs(5))
        {
            idle.swept = Some(now);
            idle.conns.retain(|_, list| {
                list.retain(fresh);
                !list.is_empty()
            });
        }
        let list = idle.conns.get_mut(key)?;
        list.retain(fresh);
        let ready = list.iter().rposition(|p| p.send.is_ready())?;
        let p = list.swap_remove(ready);
        p.lease.busy.store(true, Ordering::Relaxed);
        p.lease.uses.fetch_add(1, Ordering::Relaxed);
        Some((p.send, p.lease))
    }

    /// Closes the connection that has been idle longest, if one is.
    fn evict_one_idle(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = idle
            .conns
            .iter()
            .flat_map(|(k, list)| {
                list.iter()
                    .enumerate()
                    .filter(|(_, p)| p.send.is_ready())
                    .map(move |(i, p)| (p.since, k.clone(), i))
            })
            .min_by_key(|(since, _, _)| *since);
        if let Some((_, key, i)) = oldest {
            if let Some(list) = idle.conns.get_mut(&key) {
                list.swap_remove(i);
            }
        }
    }

    /// A place for one more request of `client`, unless it has
    /// `max_per_client` in flight.
    fn client_slot(&self, client: IpAddr) -> Option<ClientSlot> {
        let key = match client.to_canonical() {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            v4 => v4,
        };
        let mut map = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key).or_insert(0);
        if *n >= self.config.max_per_client {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            clients: self.clients.clone(),
            key,
        })
    }

    /// A new connection to `up`, holding one of the permits until it
    /// closes. `Err(None)`: no permit came within the connect timeout.
    async fn connect(
        &self,
        up: &Upstream,
    ) -> Result<(SendRequest<Body>, Arc<Lease>), Option<(String, bool)>> {
        let limit = self.config.connect_timeout;
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // every place is taken: an idle connection to another
                // endpoint gives its place up (its task ends, and the
                // permit with it)
                self.evict_one_idle();
                tokio::time::timeout(limit, self.permits.clone().acquire_owned())
                    .await
                    .map_err(|_| None)?
                    .map_err(|_| None)?
            }
        };
        let mut builder = hyper::client::conn::http1::Builder::new();
        builder.max_buf_size(self.config.max_header_bytes.max(8192));
        let idle = self.config.idle_timeout;
        let connecting = async {
            let tcp = TcpStream::connect(up.addr)
                .await
                .map_err(|e| format!("{}: {e}", up.addr))?;
            let _ = tcp.set_nodelay(true);
            match &up.tls {
                None => handshake(&builder, tcp, permit, idle).await,
                Some(name) => {
                    let tls = self
                        .tls
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| format!("{} TLS: {e}", up.addr))?;
                    handshake(&builder, tls, permit, idle).await
                }
            }
        };
        match tokio::time::timeout(limit, connecting).await {
            Ok(r) => r.map_err(|why| Some((why, false))),
            Err(_) => Err(Some((
                format!("{}: no connection within {} ms", up.addr, limit.as_millis()),
                true,
            ))),
        }
    }

    /// The endpoint's response as the client gets it; `None` when it
    /// cannot be passed on (a 101 to a request that asked for no upgrade,
    /// a transfer coding other than chunked).
    fn inbound(
        &self,
        resp: Response<hyper::body::Incoming>,
        label: &str,
        loan: Loan,
    ) -> Option<Response<Body>> {
        let (mut parts, body) = resp.into_parts();
        if parts.status.is_informational() || !codings_are_chunked(&parts.headers) {
            return None;
        }
        // RFC 9112 §6.3: with a transfer coding, a Content-Length is wrong
        if parts.headers.contains_key(header::TRANSFER_ENCODING) {
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        strip_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .append(header::VIA, HeaderValue::from_static("1.1 meridian"));
        if let Ok(v) = HeaderValue::from_str(label) {
            parts.headers.insert("x-meridian-endpoint", v);
        }
        // the client hears this node's own version (RFC 9110 §6.2)
        parts.version = Version::HTTP_11;
        let empty = http_body::Body::is_end_stream(&body);
        let mut body = Bounded::new(body, u64::MAX, self.config.idle_timeout, None);
        if empty {
            // nothing to stream (HEAD, 204, 304): hyper may never poll it
            loan.finish();
        } else {
            loan.checkin.lease.streaming.store(true, Ordering::Relaxed);
            body.loan = Some(loan);
        }
        Some(Response::from_parts(parts, Body::new(body)))
    }
}

/// Whether every transfer coding named is `chunked` (or none is).
fn codings_are_chunked(h: &HeaderMap) -> bool {
    h.get_all(header::TRANSFER_ENCODING).iter().all(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .all(|c| c.trim().eq_ignore_ascii_case("chunked"))
        })
    })
}

/// A request's `Max-Forwards`, when it has one that reads.
fn max_forwards(h: &HeaderMap) -> Option<u32> {
    h.get(header::MAX_FORWARDS)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The HTTP/1.1 client of a new connection, its connection driven by a
/// task that holds `permit` and watches the [`Lease`].
async fn handshake<I>(
    builder: &hyper::client::conn::http1::Builder,
    io: I,
    permit: tokio::sync::OwnedSemaphorePermit,
    idle: Duration,
) -> Result<(SendRequest<Body>, Arc<Lease>), String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = builder
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let lease = Arc::new(Lease::default());
    let watched = lease.clone();
    tokio::spawn(async move {
        let _held = permit;
        let mut conn = std::pin::pin!(conn);
        let mut tick = tokio::time::interval(idle / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut seen, mut still, mut idle_ticks, mut used) = (0, 0, 0, 0);
        loop {
            tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        debug!(%e, "endpoint connection ended");
                    }
                    return;
                }
                () = watched.cut.notified() => return,
                _ = tick.tick() => {
                    let now = watched.progress.load(Ordering::Relaxed);
                    // used since the last look: not idle, whatever it is now
                    let uses = watched.uses.load(Ordering::Relaxed);
                    if uses != used {
                        (used, idle_ticks) = (uses, 0);
                    }
                    if watched.streaming.load(Ordering::Relaxed) {
                        idle_ticks = 0;
                        if now == seen {
                            still += 1;
                            if still > 2 {
                                debug!("an answer stopped moving: its endpoint connection is dropped");
                                return;
                            }
                        } else {
                            (seen, still) = (now, 0);
                        }
                    } else if watched.busy.load(Ordering::Relaxed) {
                        // waiting for the answer: the request's deadline
                        // bounds that
                        (seen, still, idle_ticks) = (now, 0, 0);
                    } else {
                        idle_ticks += 1;
                        if idle_ticks > 2 {
                            return; // idle in the pool too long
                        }
                    }
                }
            }
        }
    });
    Ok((send, lease))
}

/// PEM certificates, one result each.
fn rustls_pemfile_certs(
    pem: &[u8],
) -> impl Iterator<Item = Result<rustls::pki_types::CertificateDer<'static>, String>> + '_ {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem).map(|c| c.map_err(|e| e.to_string()))
}

/// Who the request came from, as the forwarding headers say it.
pub struct Client {
    /// The TCP peer.
    pub peer: IpAddr,
    /// The peer is a trusted proxy: its forwarding headers are kept and
    /// extended rather than replaced.
    pub trusted: bool,
    /// The `Host` (or `:authority`) the client sent.
    pub host: HeaderValue,
    /// `http` or `https`: the listener's.
    pub proto: &'static str,
    /// The client's HTTP version, for `Via`.
    pub version: Version,
    /// The address steering chose for (the peer, or what a trusted proxy
    /// said): what `max_per_client` counts by.
    pub steered: IpAddr,
}

/// The request headers an endpoint gets: the client's, without hop-by-hop
/// headers or `Host` (set per attempt), with the forwarding headers.
fn outbound_headers(from: &HeaderMap, client: &Client) -> HeaderMap {
    let mut h = from.clone();
    let trailers = from.get_all(header::TE).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
    });
    strip_hop_by_hop(&mut h);
    h.remove(header::HOST);
    if trailers {
        // the one TE a proxy passes on: the client takes trailers
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    // HTTP/2 splits cookies; an HTTP/1.1 hop gets them as one (RFC 9113
    // §8.2.3)
    if h.get_all(header::COOKIE).iter().nth(1).is_some() {
        let mut joined: Vec<u8> = Vec::new();
        for (i, c) in h.get_all(header::COOKIE).iter().enumerate() {
            if i > 0 {
                joined.extend_from_slice(b"; ");
            }
            joined.extend_from_slice(c.as_bytes());
        }
        if let Ok(v) = HeaderValue::from_bytes(&joined) {
            h.insert(header::COOKIE, v);
        }
    }
    let peer = client.peer.to_canonical();
    let node = match peer {
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
        IpAddr::V4(v4) => v4.to_string(),
    };
    let host = quoted(client.host.to_str().unwrap_or(""));
    let forwarded = format!("for={node};host={host};proto={}", client.proto);
    if client.trusted {
        append_list(&mut h, X_FORWARDED_FOR, &peer.to_string());
        append_list(&mut h, header::FORWARDED, &forwarded);
        if !h.contains_key(&X_FORWARDED_HOST) {
            h.insert(X_FORWARDED_HOST, client.host.clone());
        }
        if !h.contains_key(&X_FORWARDED_PROTO) {
            h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(client.proto));
        }
    } else {
        // whatever a stranger says of the client, in any of the headers
        // backends read it from, is dropped
        let said: Vec<HeaderName> = h
            .keys()
            .filter(|k| names_client(k.as_str()))
            .cloned()
            .collect();
        for name in said {
            h.remove(name);
        }
        if let Ok(v) = HeaderValue::from_str(&peer.to_string()) {
            h.insert(X_FORWARDED_FOR, v);
        }
        if let Ok(v) = HeaderValue::from_str(&forwarded) {
            h.insert(header::FORWARDED, v);
        }
        h.insert(X_FORWARDED_HOST, client.host.clone());
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(client.proto));
    }
    let via = match client.version {
        Version::HTTP_2 => "2 meridian",
        Version::HTTP_10 => "1.0 meridian",
        _ => "1.1 meridian",
    };
    h.append(header::VIA, HeaderValue::from_static(via));
    h
}

/// Whether a header named `name` (`_` read as `-`, as CGI-style servers
/// do) says who the client is: what only this node or a trusted proxy may
/// say to an endpoint.
fn names_client(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace('_', "-");
    let name = name.as_str();
    name == "forwarded"
        || name.starts_with("x-forwarded")
        || name.starts_with("forwarded-")
        || name.ends_with("forwarded-for")
        || name.ends_with("forward-for")
        || name == "x-host"
        || name == "x-original-host"
        || name == "remote-addr"
        || name == "x-envoy-external-address"
        || name == "cf-pseudo-ipv4"
        // the many spellings of "the client's address": X-Real-IP,
        // True-Client-IP, CF-Connecting-IP, X-Originating-IP,
        // X-Remote-Addr, WL-Proxy-Client-IP, X-Azure-ClientIP ...
        || [
            "-ip", "realip", "clientip", "socketip", "-addr", "-address", "-ipv4", "-ipv6",
        ]
            .iter()
            .any(|end| name.ends_with(end))
            && [
                "client",
                "real",
                "remote",
                "connecting",
                "originating",
                "original",
                "source",
                "user",
                "proxy",
                "socket",
            ]
            .iter()
            .any(|w| name.contains(w))
}

/// `text` as an RFC 9110 quoted-string.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `name: existing, value` as one line (the lines before joined).
fn append_list(h: &mut HeaderMap, name: HeaderName, value: &str) {
    let mut joined: Vec<u8> = Vec::new();
    for line in h.get_all(&name) {
        joined.extend_from_slice(line.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(value.as_bytes());
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        h.insert(name, v);
    }
}

/// Drops the hop-by-hop headers and every header `Connection` names.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        h.remove(name);
    }
    // hyper frames bodies itself; TE: trailers is the only TE that may pass
    h.remove(header::TRANSFER_ENCODING);
}

/// The request's `Content-Length`: `Ok(None)` without one, `Err` when
/// unreadable (hyper has already refused conflicting ones).
fn content_length(h: &HeaderMap) -> Result<Option<u64>, ()> {
    match h.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or(()),
    }
}

/// A short plain-text answer of the proxy itself.
fn failed(status: StatusCode, body: &'static str) -> Proxied {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Proxied {
        response,
        endpoint: None,
    }
}

impl Proxied {
    /// Says which endpoint the failure came from.
    fn blame(mut self, id: &str, label: &str) -> Proxied {
        if let Ok(v) = HeaderValue::from_str(label) {
            self.response.headers_mut().insert("x-meridian-endpoint", v);
        }
        self.endpoint = Some(id.to_string());
        self
    }
}

/// A body passed through as it comes, cut with an error when it passes
/// `limit` bytes (raising `over`) or moves nothing for `idle` while its
/// reader waits. The idle timer starts only once the body has to wait,
/// and moves on a whole period at a time: a stalled body is cut between
/// `idle` and twice that after its last frame, with no timer work per
/// frame.
pub struct Bounded<B> {
    inner: B,
    left: u64,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A frame came since the timer was last set.
    moved: bool,
    over: Option<Arc<AtomicBool>>,
    /// An answer's: the endpoint connection it comes on (told of each
    /// frame, given back at the end) and the client's place.
    pub loan: Option<Loan>,
    /// Raised when the body has ended.
    pub ended: Option<Arc<AtomicBool>>,
    /// Drop from trailers every header that names the client.
    pub scrub_trailers: bool,
    /// The length the body declared: it has ended once that has passed.
    pub declared: Option<u64>,
    passed: u64,
}

/// What an answer's body holds until it ends.
pub struct Loan {
    checkin: Checkin,
    /// The request's body has ended.
    uploaded: Arc<AtomicBool>,
    _slot: Option<ClientSlot>,
}

impl Loan {
    /// The answer has been passed on whole: the connection goes back to
    /// the pool, unless the request's body is still coming (the endpoint
    /// answered early), in which case it is closed.
    fn finish(self) {
        let lease = &self.checkin.lease;
        lease.streaming.store(false, Ordering::Relaxed);
        if self.uploaded.load(Ordering::Relaxed) {
            self.checkin.give_back();
        } else {
            lease.cut.notify_one();
        }
    }
}

impl<B> Drop for Bounded<B> {
    fn drop(&mut self) {
        // an answer dropped before its end: its connection is done for
        if let Some(loan) = self.loan.take() {
            loan.checkin.lease.streaming.store(false, Ordering::Relaxed);
            loan.checkin.lease.cut.notify_one();
        }
    }
}

impl<B> Bounded<B> {
    pub fn new(inner: B, limit: u64, idle: Duration, over: Option<Arc<AtomicBool>>) -> Bounded<B> {
        Bounded {
            inner,
            left: limit,
            idle,
            timer: None,
            moved: false,
            over,
            loan: None,
            ended: None,
            scrub_trailers: false,
            declared: None,
            passed: 0,
        }
    }

    /// The body has ended: say so, and give its connection back.
    fn end(&mut self) {
        if let Some(e) = &self.ended {
            e.store(true, Ordering::Relaxed);
        }
        if let Some(loan) = self.loan.take() {
            loan.finish();
        }
    }

    /// Whether the body has waited a whole period without a frame.
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let idle = self.idle;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            if !std::mem::take(&mut self.moved) {
                return true;
            }
            timer.as_mut().reset(tokio::time::Instant::now() + idle);
        }
    }
}

impl<B> http_body::Body for Bounded<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                if n > this.left {
                    if let Some(o) = &this.over {
                        o.store(true, Ordering::Relaxed);
                    }
                    return Poll::Ready(Some(Err("the body is larger than allowed".into())));
                }
                this.left -= n;
                this.moved = true;
                if let Some(loan) = &this.loan {
                    loan.checkin.lease.progress.fetch_add(1, Ordering::Relaxed);
                }
                // hyper stops polling a body that says it has ended, so
                // the end is noted with its last frame
                this.passed += n;
                if this.inner.is_end_stream() || this.declared == Some(this.passed) {
                    this.end();
                }
                if this.scrub_trailers && frame.is_trailers() {
                    let mut trailers = frame.into_trailers().unwrap_or_default();
                    let said: Vec<HeaderName> = trailers
                        .keys()
                        .filter(|k| names_client(k.as_str()))
                        .cloned()
                        .collect();
                    for name in said {
                        trailers.remove(name);
                    }
                    return Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.end();
                Poll::Ready(None)
            }
            Poll::Pending if this.stalled(cx) => Poll::Ready(Some(Err(format!(
                "the body moved nothing for {} ms",
                this.idle.as_millis()
            )
            .into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(address: &str, proxy_url: Option<&str>) -> Endpoint {
        let text = format!(
            "pools:\n  p:\n    endpoints:\n      - {{id: e, address: \"{address}\", region: eu{}}}\n",
            proxy_url.map_or(String::new(), |u| format!(", proxy_url: \"{u}\""))
        );
        let spec = meridian_config::zone::parse("t.yaml", &text).expect("valid");
        spec.pools["p"].endpoints[0].clone()
    }

    #[test]
    fn upstreams_connect_to_the_address() {
        let up = Upstream::of(&endpoint("192.0.2.1", None)).unwrap();
        assert_eq!(up.addr, "192.0.2.1:80".parse().unwrap());
        assert_eq!((up.tls, up.authority.as_str()), (None, "192.0.2.1"));
        let up = Upstream::of(&endpoint("2001:db8::1", Some("https://app.example.com"))).unwrap();
        assert_eq!(up.addr, "[2001:db8::1]:443".parse().unwrap());
        assert_eq!(
            up.tls,
            Some(ServerName::try_from("app.example.com").unwrap())
        );
        assert_eq!(up.authority, "app.example.com");
        let up = Upstream::of(&endpoint("192.0.2.1", Some("http://[2001:db8::9]:8080/"))).unwrap();
        assert_eq!(up.addr, "192.0.2.1:8080".parse().unwrap());
        assert_eq!(up.authority, "[2001:db8::9]:8080");
        let up = Upstream::of(&endpoint("192.0.2.1", Some("https://[2001:db8::9]"))).unwrap();
        assert_eq!(up.addr, "192.0.2.1:443".parse().unwrap());
        assert!(matches!(up.tls, Some(ServerName::IpAddress(_))));
    }

    #[test]
    fn forwarding_headers_replace_a_strangers_and_extend_a_proxys() {
        let mut from = HeaderMap::new();
        for (k, v) in [
            ("x-forwarded-for", "203.0.113.1"),
            ("forwarded", "for=203.0.113.1"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "hop"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("host", "www.example.com"),
            ("accept", "*/*"),
            ("x-real-ip", "203.0.113.1"),
            ("x-forwarded-port", "1"),
            ("true-client-ip", "203.0.113.1"),
            ("x_forwarded_for", "203.0.113.1"),
            ("x-originating-ip", "203.0.113.1"),
            ("wl-proxy-client-ip", "203.0.113.1"),
            ("x-azure-clientip", "203.0.113.1"),
            ("forwarded-for", "203.0.113.1"),
            ("x-forwarded", "for=203.0.113.1"),
            ("x-appengine-user-ip", "203.0.113.1"),
            ("x-envoy-external-address", "203.0.113.1"),
            ("x-realip", "203.0.113.1"),
            ("x-client-ip-address", "203.0.113.1"),
            ("x-source-ip", "203.0.113.1"),
            ("x-forward-for", "203.0.113.1"),
            ("x-original-host", "evil.example"),
            ("te", "trailers, deflate"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
        ] {
            from.append(k, HeaderValue::from_static(v));
        }
        let client = |trusted| Client {
            peer: "127.0.0.9".parse().unwrap(),
            trusted,
            host: HeaderValue::from_static("www.example.com"),
            proto: "https",
            version: Version::HTTP_2,
            steered: "127.0.0.9".parse().unwrap(),
        };
        let h = outbound_headers(&from, &client(false));
        let get = |h: &HeaderMap, k: &str| h.get(k).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(get(&h, "x-forwarded-for").as_deref(), Some("127.0.0.9"));
        assert_eq!(
            get(&h, "forwarded").as_deref(),
            Some("for=127.0.0.9;host=\"www.example.com\";proto=https")
        );
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "transfer-encoding",
            "upgrade",
            "host",
        ] {
            assert_eq!(get(&h, gone), None, "{gone}");
        }
        assert_eq!(get(&h, "accept").as_deref(), Some("*/*"));
        assert_eq!(get(&h, "via").as_deref(), Some("2 meridian"));
        assert_eq!(get(&h, "x-real-ip"), None);
        assert_eq!(get(&h, "x-forwarded-port"), None);
        for gone in [
            "true-client-ip",
            "x-originating-ip",
            "wl-proxy-client-ip",
            "x-azure-clientip",
            "forwarded-for",
            "x-forwarded",
            "x-appengine-user-ip",
            "x-envoy-external-address",
            "x-realip",
            "x-client-ip-address",
            "x-source-ip",
            "x-forward-for",
            "x-original-host",
        ] {
            assert_eq!(get(&h, gone), None, "{gone}");
        }
        // a header that merely ends like one is kept
        assert!(!names_client("x-zip") && !names_client("accept"));
        assert!(!names_client("x-user-membership"));
        assert_eq!(get(&h, "x_forwarded_for"), None);
        assert_eq!(get(&h, "te").as_deref(), Some("trailers"));
        assert_eq!(get(&h, "cookie").as_deref(), Some("a=1; b=2"));
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
        let h = outbound_headers(&from, &client(true));
        assert_eq!(
            get(&h, "x-forwarded-for").as_deref(),
            Some("203.0.113.1, 127.0.0.9")
        );
        assert_eq!(
            get(&h, "forwarded").as_deref(),
            Some("for=203.0.113.1, for=127.0.0.9;host=\"www.example.com\";proto=https")
        );
    }

    #[tokio::test]
    async fn bodies_are_cut_past_their_limit() {
        use http_body_util::BodyExt;
        let over = Arc::new(AtomicBool::new(false));
        let body = Bounded::new(
            Body::from(vec![0u8; 100]),
            99,
            Duration::from_secs(5),
            Some(over.clone()),
        );
        assert!(body.collect().await.is_err());
        assert!(over.load(Ordering::Relaxed));
        let body = Bounded::new(
            Body::from(vec![0u8; 100]),
            100,
            Duration::from_secs(5),
            None,
        );
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 100);
    }

    /// A body whose sender never sends.
    struct Stalled;

    impl http_body::Body for Stalled {
        type Data = Bytes;
        type Error = axum::Error;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
            Poll::Pending
        }
    }

    /// A body that sends `left` frames, one every `every`.
    struct Trickle {
        left: usize,
        every: Duration,
        next: Pin<Box<tokio::time::Sleep>>,
    }

    impl http_body::Body for Trickle {
        type Data = Bytes;
        type Error = axum::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            if self.next.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.left -= 1;
            let at = tokio::time::Instant::now() + self.every;
            self.next.as_mut().reset(at);
            Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(b"x")))))
        }
    }

    #[tokio::test]
    async fn a_body_that_keeps_moving_is_not_cut() {
        use http_body_util::BodyExt;
        let every = Duration::from_millis(20);
        let trickle = Trickle {
            left: 15,
            every,
            next: Box::pin(tokio::time::sleep(every)),
        };
        let body = Bounded::new(trickle, u64::MAX, Duration::from_millis(100), None);
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 15);
    }

    #[tokio::test]
    async fn a_body_that_stalls_is_cut() {
        use http_body_util::BodyExt;
        let body = Bounded::new(Stalled, u64::MAX, Duration::from_millis(50), None);
        let err = body.collect().await.expect_err("cut");
        assert!(err.to_string().contains("moved nothing"), "{err}");
    }
}
