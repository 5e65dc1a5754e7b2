//! The HTTP fallback: plain-HTTP listeners that redirect each request for
//! a steered name to the endpoint steering chooses for the request's own
//! client — the same pipeline as DNS ([`meridian_dns::fallback::choose`]),
//! on the same snapshot, GeoIP and replicated health.
//!
//! - The host is the `Host` header (or the HTTP/2 `:authority`), port
//!   stripped, any case; it must name a steered record (else 404).
//! - The client is the TCP peer; only when the peer is a trusted proxy is
//!   the right-most untrusted address of `X-Forwarded-For` (or
//!   `Forwarded: for=`) believed.
//! - The target comes only from the chosen endpoint's `redirect_url`, with
//!   `{path}` replaced by the request's path and query exactly as sent
//!   (which HTTP has already checked to be a valid request target): never
//!   from the request's host or headers, so no open redirect and no header
//!   injection.
//! - Nothing in service: 503 with `Retry-After`. An endpoint without a
//!   `redirect_url`: 502, since there is nowhere to send the client.
//!
//! Listeners are bounded as the API's are (`consensus::http::serve`:
//! connections per client and in total, header size and time limits).

#![forbid(unsafe_code)]

pub mod proxy;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HOST, LOCATION, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use meridian_config::node::HttpConfig;
use meridian_config::zone::{HttpMode, ProxyHost};
use meridian_consensus::http::{Limits, Peer};
use meridian_dns::fallback::{choose, Choice};
use meridian_dns::handler::GeoHandle;
use meridian_dns::SnapshotHandle;
use proxy::{Proxy, Target, Upstream};

/// What the fallback answers from.
#[derive(Clone)]
pub struct Fallback {
    pub dns: SnapshotHandle,
    pub geo: GeoHandle,
    pub config: Arc<HttpConfig>,
    /// Proxy mode's connections to endpoints, shared by every listener.
    pub proxy: Arc<Proxy>,
    /// Told of every answer and every upstream attempt.
    pub observer: Option<Arc<dyn Observer>>,
    /// `http` or `https`: the listener's scheme ([`serve`] sets it).
    pub proto: &'static str,
    /// The 503's body and content type when nothing is in service.
    pub unavailable: (axum::body::Bytes, &'static str),
}

/// An `unavailable_page` may be this large at most.
const MAX_PAGE_BYTES: u64 = 1 << 20;

impl Fallback {
    /// The fallback of `config`; fails when proxy mode's `ca_file` or the
    /// `unavailable_page` does not load.
    pub fn new(
        dns: SnapshotHandle,
        geo: GeoHandle,
        config: HttpConfig,
    ) -> Result<Fallback, String> {
        let unavailable = match &config.unavailable_page {
            None => (
                axum::body::Bytes::from_static(
                    b"no endpoint is in service for this name; retry shortly\n",
                ),
                "text/plain; charset=utf-8",
            ),
            Some(file) => {
                let problem = |e: String| format!("http.unavailable_page {}: {e}", file.display());
                let size = std::fs::metadata(file)
                    .map_err(|e| problem(e.to_string()))?
                    .len();
                if size > MAX_PAGE_BYTES {
                    return Err(problem(format!("{size} bytes; at most {MAX_PAGE_BYTES}")));
                }
                let page = std::fs::read(file).map_err(|e| problem(e.to_string()))?;
                let html = file.extension().is_some_and(|e| {
                    e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm")
                });
                let kind = if html {
                    "text/html; charset=utf-8"
                } else {
                    "text/plain; charset=utf-8"
                };
                (axum::body::Bytes::from(page), kind)
            }
        };
        Ok(Fallback {
            unavailable,
            dns,
            geo,
            proxy: Arc::new(Proxy::new(config.proxy.clone())?),
            config: Arc::new(config),
            observer: None,
            proto: "http",
        })
    }
}

/// What the operations side counts: hooks called as the fallback answers.
pub trait Observer: Send + Sync {
    /// A request was answered: the host it named (empty when it named
    /// none), the status, and the endpoint chosen (if one was).
    fn answered(&self, host: &str, status: StatusCode, endpoint: Option<&str>);
    /// One attempt of proxy mode at `endpoint`: how long until its
    /// response headers, and their status (`None`: no response).
    fn upstream(&self, endpoint: &str, took: std::time::Duration, status: Option<StatusCode>);
}

/// The service: every method and path, one handler, without a router's
/// layers (one Arc to clone per request).
pub fn service(f: Fallback) -> impl meridian_consensus::http::App {
    let f = Arc::new(f);
    tower::service_fn(move |req: Request| {
        let f = f.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(&f, req).await) }
    })
}

/// Serves `f` on `listener` (HTTPS with `tls`) until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut f: Fallback,
) {
    f.proto = if tls.is_some() { "https" } else { "http" };
    let limits = Limits {
        max_connections: 4096,
        max_per_peer: 256,
        // a redirect is answered at once, and proxy mode keeps its own
        // deadline (http.proxy.timeout_secs): no timer per request
        request_timeout: None,
        name: "http",
        http2: true,
        ..Limits::default()
    };
    meridian_consensus::http::serve(listener, tls, service(f), limits, Arc::new(|_| false)).await;
}

/// The name a request is for, lower case, without the port or one final
/// dot: for an absolute-form target (and HTTP/2's `:authority`) the
/// target's authority, which a `Host` must then not contradict on HTTP/2;
/// otherwise the one `Host` header. `None`: no name, several `Host`
/// headers, a port that is no port, or an address rather than a name.
pub fn host_of(headers: &HeaderMap, uri: &Uri, version: axum::http::Version) -> Option<String> {
    let mut hosts = headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return None; // RFC 9112 §3.2: more than one Host is a bad request
    }
    let raw = match (uri.authority(), host) {
        (Some(a), Some(h)) if version >= axum::http::Version::HTTP_2 => {
            if !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes()) {
                return None;
            }
            a.as_str().to_string()
        }
        // HTTP/1.1 must send a Host, even with an absolute-form target
        // (RFC 9112 §3.2)
        (Some(_), None) if version == axum::http::Version::HTTP_11 => return None,
        // HTTP/1 absolute-form: the target's authority, Host ignored
        (Some(a), _) => a.as_str().to_string(),
        (None, Some(h)) => h.to_str().ok()?.to_string(),
        (None, None) => return None,
    };
    if raw.starts_with('[') || raw.contains('@') {
        return None; // an IPv6 literal or user info names no steered record
    }
    let host = match raw.rsplit_once(':') {
        Some((h, port)) => {
            let port_ok = !port.is_empty()
                && port.len() <= 5
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok_and(|p| p > 0);
            if !port_ok {
                return None;
            }
            h
        }
        None => raw.as_str(),
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let ok = !host.is_empty()
        && host.len() <= 253
        && !host.contains("..")
        && !host.starts_with('.')
        && !host.ends_with('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && host.parse::<IpAddr>().is_err();
    ok.then_some(host)
}

/// Which header trusted proxies say the client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedBy {
    XForwardedFor,
    Forwarded,
}

/// The client a request is for: the peer, or, when the peer is a trusted
/// proxy, the right-most address of the proxies' header (only the one
/// `header` names: a client may send the other) that is not a trusted
/// proxy. A hop that cannot be read ends the walk at the peer: what lies
/// left of it may be the client's own invention.
pub fn client_of(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
    header: ForwardedBy,
) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let name = match header {
        ForwardedBy::XForwardedFor => "x-forwarded-for",
        ForwardedBy::Forwarded => "forwarded",
    };
    // every hop, right to left over all the header's lines: the first
    // that is not a trusted proxy is the client; one that cannot be read
    // ends the walk at the peer
    for line in headers.get_all(name).iter().rev() {
        let Ok(line) = line.to_str() else {
            return peer;
        };
        let mut verdict = None;
        let mut judge = |hop: Option<IpAddr>| match hop {
            Some(ip) if is_trusted(&ip) => false,
            Some(ip) => {
                verdict = Some(ip);
                true
            }
            None => {
                verdict = Some(peer);
                true
            }
        };
        let done = match header {
            ForwardedBy::XForwardedFor => line.rsplit(',').any(|h| judge(hop_address(h.trim()))),
            // RFC 7239: a quoted value may hold `,` and `;`
            ForwardedBy::Forwarded => {
                let elements: Vec<&str> = unquoted_split(line, b',').collect();
                elements.into_iter().rev().any(|e| judge(forwarded_for(e)))
            }
        };
        if done {
            return verdict.unwrap_or(peer);
        }
    }
    peer
}

/// The address of a `Forwarded` element's `for=` (quoted or not).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    unquoted_split(element, b';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
        .and_then(|(_, v)| {
            let v = v.trim();
            let v = match v.strip_prefix('"') {
                Some(q) => q.strip_suffix('"')?,
                None => v,
            };
            hop_address(v)
        })
}

/// `text` split at each `sep` outside a quoted string (with its `\`
/// escapes).
fn unquoted_split(text: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let t = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, b) in t.bytes().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                _ if b == sep && !quoted => {
                    rest = Some(&t[i + 1..]);
                    return Some(&t[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(t)
    })
}

/// One hop's address: `ip`, `ip:port`, `[v6]` or `[v6]:port`, canonical
/// (an IPv4-mapped IPv6 address is its IPv4 address).
fn hop_address(text: &str) -> Option<IpAddr> {
    let ip = if let Some(rest) = text.strip_prefix('[') {
        rest.split(']').next()?.parse::<IpAddr>().ok()?
    } else if let Ok(ip) = text.parse::<IpAddr>() {
        ip
    } else {
        text.parse::<SocketAddr>().ok()?.ip()
    };
    Some(ip.to_canonical())
}

thread_local! {
    /// Each thread's draws for weighted steps, seeded once from the OS,
    /// and the pipeline's working list.
    static STEERING: std::cell::RefCell<(rand::rngs::SmallRng, Vec<u16>)> =
        std::cell::RefCell::new((rand::SeedableRng::from_os_rng(), Vec::new()));
}

/// A short plain-text answer; no answer of the fallback may be cached (a
/// redirect is for one client, now).
fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [
            ("content-type", "text/plain; charset=utf-8"),
            ("cache-control", "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Whether `b` may stand in a URI as it is (RFC 3986: unreserved,
/// reserved, and `%` of an escape already made).
fn uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
}

/// `path` with every byte a URI may not hold as it is percent-encoded, as
/// a URI in a `Location` must be.
fn encode_high(path: &str) -> std::borrow::Cow<'_, str> {
    if path.bytes().all(uri_byte) {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len() * 3);
    for b in path.bytes() {
        if uri_byte(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// What the pipeline chose for one request.
enum Picked {
    /// `id` only when someone will read it (`want_id`), `label` only with
    /// `http.endpoint_header`.
    Redirect {
        id: Option<String>,
        label: Option<String>,
        target: Option<String>,
    },
    Proxy(Target),
    Nothing,
    Unknown,
}

/// Runs `host`'s steered record for `client` without the endpoints in
/// `exclude`, keeping only what the answer needs (no copy of the
/// endpoint). `path` fills a redirect's `{path}`.
fn pick(f: &Fallback, host: &str, client: (IpAddr, &str), path: &str, exclude: &[u16]) -> Picked {
    let (client, by) = client;
    let label = |e: &meridian_config::zone::Endpoint| {
        format!("{}; client={client}; by={by}; region={}", e.id, e.region)
    };
    let snap = f.dns.load();
    let geo = f.geo.load();
    let want_id = f.config.endpoint_header || f.observer.is_some();
    STEERING.with(|cell| {
        let (rng, scratch) = &mut *cell.borrow_mut();
        let geo = geo.as_deref();
        match choose(&snap, geo, host, client, rng, exclude, scratch) {
            Choice::Endpoint {
                endpoint,
                index,
                record,
            } if record.http == HttpMode::Proxy => match Upstream::of(endpoint) {
                Some(upstream) => Picked::Proxy(Target {
                    index,
                    id: endpoint.id.clone(),
                    label: label(endpoint),
                    upstream,
                    rewrite_host: record.proxy_host == ProxyHost::Endpoint,
                }),
                None => Picked::Redirect {
                    id: Some(endpoint.id.clone()),
                    label: Some(label(endpoint)),
                    target: None,
                },
            },
            Choice::Endpoint { endpoint, .. } => Picked::Redirect {
                id: want_id.then(|| endpoint.id.clone()),
                label: f.config.endpoint_header.then(|| label(endpoint)),
                target: endpoint
                    .redirect_url
                    .as_deref()
                    .map(|t| t.replacen("{path}", &encode_high(path), 1)),
            },
            Choice::Nothing => Picked::Nothing,
            Choice::Unknown => Picked::Unknown,
        }
    })
}

async fn answer(f: &Fallback, req: Request) -> Response {
    let (resp, host, endpoint) = handle(f, req).await;
    if let Some(o) = &f.observer {
        o.answered(
            host.as_deref().unwrap_or(""),
            resp.status(),
            endpoint.as_deref(),
        );
    }
    resp
}

/// The answer, the host it was for and the endpoint chosen.
async fn handle(f: &Fallback, req: Request) -> (Response, Option<String>, Option<String>) {
    let peer = req
        .extensions()
        .get::<Peer>()
        .map(|p| p.addr.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let Some(host) = host_of(req.headers(), req.uri(), req.version()) else {
        let resp = text(
            StatusCode::BAD_REQUEST,
            "a request names its host, once: Host: NAME\n",
        );
        return (resp, None, None);
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if path == "*" && req.method() == axum::http::Method::OPTIONS {
        // about the server itself (RFC 9110 §9.3.7)
        let resp = (
            StatusCode::OK,
            [(
                axum::http::header::ALLOW,
                HeaderValue::from_static("GET, HEAD, OPTIONS, POST, PUT, DELETE, PATCH"),
            )],
        )
            .into_response();
        return (resp, Some(host), None);
    }
    if !path.starts_with('/') {
        let resp = text(StatusCode::BAD_REQUEST, "only paths are redirected\n");
        return (resp, Some(host), None);
    }
    let header = if f.config.forwarded_header == "forwarded" {
        ForwardedBy::Forwarded
    } else {
        ForwardedBy::XForwardedFor
    };
    let trusted = &f.config.trusted_proxies;
    let client = client_of(peer, req.headers(), trusted, header);
    // why this client: the peer itself, or what a trusted proxy said
    let by = if client == peer.to_canonical() {
        "peer"
    } else {
        f.config.forwarded_header.as_str()
    };
    let (id, label, target) = match pick(f, &host, (client, by), path, &[]) {
        Picked::Unknown => {
            let resp = text(StatusCode::NOT_FOUND, "no steered name here\n");
            return (resp, Some(host), None);
        }
        Picked::Nothing => {
            let (page, kind) = &f.unavailable;
            let resp = (
                StatusCode::SERVICE_UNAVAILABLE,
                [
                    (CONTENT_TYPE, HeaderValue::from_static(kind)),
                    (CACHE_CONTROL, HeaderValue::from_static("no-store")),
                    (RETRY_AFTER, HeaderValue::from(f.config.retry_after_secs)),
                ],
                page.clone(),
            )
                .into_response();
            return (resp, Some(host), None);
        }
        Picked::Proxy(first) => {
            // the name steering used: the target's authority when it has
            // one (RFC 9112 §3.2.2: a proxy makes Host from it), else Host
            let host_value = req
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                .or_else(|| req.headers().get(HOST).cloned())
                .unwrap_or_else(|| HeaderValue::from_static(""));
            let who = proxy::Client {
                peer,
                trusted: trusted.iter().any(|n| n.contains(&peer.to_canonical())),
                host: host_value,
                proto: f.proto,
                version: req.version(),
                steered: client,
            };
            let observer = f.observer.clone();
            // boxed: a redirect's future stays small
            let proxied = Box::pin(f.proxy.forward(
                req,
                who,
                first,
                |tried| match pick(f, &host, (client, by), "", tried) {
                    Picked::Proxy(t) => Some(t),
                    _ => None,
                },
                |id, took, status| {
                    if let Some(o) = &observer {
                        o.upstream(id, took, status);
                    }
                },
            ))
            .await;
            let mut resp = proxied.response;
            if !f.config.endpoint_header {
                resp.headers_mut().remove("x-meridian-endpoint");
            }
            return (resp, Some(host), proxied.endpoint);
        }
        Picked::Redirect { id, label, target } => (id, label, target),
    };
    let Some(target) = target else {
        let resp = text(
            StatusCode::BAD_GATEWAY,
            "the chosen endpoint has no redirect_url\n",
        );
        return (resp, Some(host), id);
    };
    // the String's own buffer becomes the header's: no copy
    let Ok(location) = HeaderValue::from_maybe_shared(axum::body::Bytes::from(target)) else {
        let resp = text(
            StatusCode::BAD_REQUEST,
            "the request's path cannot be redirected\n",
        );
        return (resp, Some(host), id);
    };
    let status = StatusCode::from_u16(f.config.status).unwrap_or(StatusCode::TEMPORARY_REDIRECT);
    let mut resp = (
        status,
        [
            (LOCATION, location),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response();
    if let Some(label) = label {
        if let Ok(v) = HeaderValue::from_maybe_shared(axum::body::Bytes::from(label)) {
            resp.headers_mut().insert("x-meridian-endpoint", v);
        }
    }
    (resp, Some(host), id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn hosts() {
        use axum::http::Version;
        let uri: Uri = "/x".parse().unwrap();
        let v11 = Version::HTTP_11;
        let host = |v: &str| host_of(&headers(&[("host", v)]), &uri, v11);
        assert_eq!(
            host("WWW.Example.com:8080").as_deref(),
            Some("www.example.com")
        );
        assert_eq!(host("www.example.com.").as_deref(), Some("www.example.com"));
        for bad in [
            "[::1]:80",
            "a b",
            "www.example.com:http",
            "www.example.com:",
            "www.example.com:99999999",
            "www.example.com..",
            "127.0.0.1",
            "user@www.example.com",
        ] {
            assert_eq!(host(bad), None, "{bad}");
        }
        assert_eq!(host_of(&HeaderMap::new(), &uri, v11), None);
        let two = headers(&[("host", "a.example.com"), ("host", "b.example.com")]);
        assert_eq!(host_of(&two, &uri, v11), None, "two Hosts");
        // HTTP/1 absolute-form: the target's authority, Host ignored
        let abs: Uri = "http://a.example.com/x".parse().unwrap();
        let other = headers(&[("host", "b.example.com")]);
        assert_eq!(host_of(&other, &abs, v11).as_deref(), Some("a.example.com"));
        // ... but HTTP/1.1 must send one all the same; HTTP/1.0 need not
        assert_eq!(host_of(&HeaderMap::new(), &abs, v11), None);
        assert_eq!(
            host_of(&HeaderMap::new(), &abs, Version::HTTP_10).as_deref(),
            Some("a.example.com")
        );
        // HTTP/2: :authority and Host must agree
        assert_eq!(host_of(&other, &abs, Version::HTTP_2), None);
        assert_eq!(
            host_of(&HeaderMap::new(), &abs, Version::HTTP_2).as_deref(),
            Some("a.example.com")
        );
    }

    /// What an [`Observer`] was told.
    #[derive(Default)]
    struct Seen(std::sync::Mutex<Vec<String>>);

    impl Observer for Seen {
        fn answered(&self, host: &str, status: StatusCode, endpoint: Option<&str>) {
            self.0.lock().unwrap().push(format!(
                "{host} {} {}",
                status.as_u16(),
                endpoint.unwrap_or("-")
            ));
        }
        fn upstream(&self, endpoint: &str, _: std::time::Duration, status: Option<StatusCode>) {
            self.0
                .lock()
                .unwrap()
                .push(format!("upstream {endpoint} {status:?}"));
        }
    }

    #[tokio::test]
    async fn observers_hear_of_every_answer() {
        use tower::ServiceExt;
        let spec = meridian_config::zone::parse(
            "t.yaml",
            "zones:
  example.com:
    soa: {rname: hostmaster.example.com.}
    ns: [{name: ns.example.net.}]
    steered:
      - {name: www, type: A, pool: web, steps: [health, {first: 1}]}
pools:
  web:
    endpoints:
      - {id: a, address: 192.0.2.1, region: eu, redirect_url: \"https://a.example.com{path}\"}
",
        )
        .expect("valid");
        let snap = meridian_dns::Snapshot::build(&spec, &Default::default(), 1, 1).expect("builds");
        let config = HttpConfig {
            listen: Vec::new(),
            status: 307,
            trusted_proxies: Vec::new(),
            forwarded_header: "x-forwarded-for".into(),
            endpoint_header: false,
            retry_after_secs: 5,
            unavailable_page: None,
            tls: None,
            advertise: Vec::new(),
            proxy: Default::default(),
        };
        let mut f = Fallback::new(SnapshotHandle::new(snap), GeoHandle::default(), config)
            .expect("fallback");
        let seen = Arc::new(Seen::default());
        f.observer = Some(seen.clone());
        let service = service(f);
        for (host, status) in [("www.example.com", 307), ("nope.example.com", 404)] {
            let req = axum::http::Request::get("/x")
                .header("host", host)
                .body(axum::body::Body::empty())
                .unwrap();
            let resp = service.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status().as_u16(), status, "{host}");
        }
        // the endpoint's id is read for the observer even with the header off
        assert_eq!(
            *seen.0.lock().unwrap(),
            ["www.example.com 307 a", "nope.example.com 404 -"]
        );
    }

    #[test]
    fn paths_are_plain_ascii_in_locations() {
        assert_eq!(encode_high("/a%20b?q"), "/a%20b?q");
        assert_eq!(encode_high("/\u{e9}"), "/%C3%A9");
        assert_eq!(
            encode_high("/a\"b{c}|d^e\\f?g`h"),
            "/a%22b%7Bc%7D%7Cd%5Ee%5Cf?g%60h"
        );
    }

    #[test]
    fn clients() {
        let trusted: Vec<ipnet::IpNet> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let xff = |v: &str| {
            client_of(
                peer,
                &headers(&[("x-forwarded-for", v)]),
                &trusted,
                ForwardedBy::XForwardedFor,
            )
        };
        // the right-most untrusted hop
        assert_eq!(xff("203.0.113.9, 192.0.2.7, 10.1.1.1"), ip("192.0.2.7"));
        // ports, brackets and mapped addresses read as the address
        assert_eq!(xff("198.51.100.9, 192.0.2.7:4444"), ip("192.0.2.7"));
        assert_eq!(xff("198.51.100.9, [2001:db8::1]:443"), ip("2001:db8::1"));
        assert_eq!(xff("192.0.2.7, ::ffff:127.0.0.1"), ip("192.0.2.7"));
        // a hop that cannot be read ends the walk at the peer
        assert_eq!(xff("198.51.100.9, unknown"), peer);
        assert_eq!(xff("198.51.100.9, _hidden, 10.0.0.1"), peer);
        // nothing but trusted hops: the peer
        assert_eq!(xff("10.0.0.5"), peer);
        // an untrusted peer's headers mean nothing
        let stranger = ip("127.0.0.2");
        let h = headers(&[("x-forwarded-for", "192.0.2.7")]);
        assert_eq!(
            client_of(stranger, &h, &trusted, ForwardedBy::XForwardedFor),
            stranger
        );
        // a mapped peer is its IPv4 address, trusted as such
        let mapped = ip("::ffff:127.0.0.1");
        assert_eq!(
            client_of(mapped, &h, &trusted, ForwardedBy::XForwardedFor),
            ip("192.0.2.7")
        );
        // only the proxies' own header counts
        let both = headers(&[
            ("x-forwarded-for", "198.51.100.9"),
            (
                "forwarded",
                "for=198.51.100.3;proto=https, for=\"[2001:db8::1]:4711\"",
            ),
        ]);
        assert_eq!(
            client_of(peer, &both, &trusted, ForwardedBy::Forwarded),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_of(peer, &both, &trusted, ForwardedBy::XForwardedFor),
            ip("198.51.100.9")
        );
        // a comma inside a quoted value is no new hop
        let quoted = headers(&[(
            "forwarded",
            "for=198.51.100.3;host=\"a, for=6.6.6.6;x\", for=127.0.0.1",
        )]);
        assert_eq!(
            client_of(peer, &quoted, &trusted, ForwardedBy::Forwarded),
            ip("198.51.100.3")
        );
        let hidden = headers(&[("forwarded", "for=198.51.100.3, for=_gazonk")]);
        assert_eq!(
            client_of(peer, &hidden, &trusted, ForwardedBy::Forwarded),
            peer
        );
    }
}
