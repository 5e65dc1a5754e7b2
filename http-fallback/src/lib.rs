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

pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{HOST, LOCATION, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use meridian_config::node::HttpConfig;
use meridian_consensus::http::{Limits, Peer};
use meridian_dns::fallback::{choose, Choice};
use meridian_dns::handler::GeoHandle;
use meridian_dns::SnapshotHandle;

/// What the fallback answers from.
#[derive(Clone)]
pub struct Fallback {
    pub dns: SnapshotHandle,
    pub geo: GeoHandle,
    pub config: Arc<HttpConfig>,
}

/// The router: every method and path, one handler.
pub fn router(f: Fallback) -> Router {
    Router::new().fallback(redirect).with_state(f)
}

/// Serves `f` on `listener` (HTTPS with `tls`) until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    f: Fallback,
) {
    let limits = Limits {
        max_connections: 4096,
        max_per_peer: 256,
        ..Limits::default()
    };
    meridian_consensus::http::serve(listener, tls, router(f), limits, Arc::new(|_| false)).await;
}

/// The name a request is for: `Host`, else the URI's authority, without
/// the port, lower case, without a final dot. `None` when there is none or
/// it is not a host name.
pub fn host_of(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let raw = match headers.get(HOST) {
        Some(h) => h.to_str().ok()?.to_string(),
        None => uri.authority()?.as_str().to_string(),
    };
    // an HTTP/2 request whose Host and :authority disagree names no one
    if let (Some(h), Some(a)) = (headers.get(HOST), uri.authority()) {
        if !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes()) {
            return None;
        }
    }
    if raw.starts_with('[') {
        return None; // an IPv6 literal names no steered record
    }
    let host = raw.rsplit_once(':').map_or(raw.as_str(), |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            ""
        }
    });
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    ok.then_some(host)
}

/// The client a request is for: the peer, or, when the peer is a trusted
/// proxy, the right-most address of the forwarding headers that is not.
pub fn client_of(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // every hop the proxies added, in order, right-most last
    let mut hops: Vec<IpAddr> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(text) = v.to_str() else { continue };
        hops.extend(
            text.split(',')
                .filter_map(|h| h.trim().parse::<IpAddr>().ok()),
        );
    }
    if hops.is_empty() {
        for v in headers.get_all("forwarded") {
            let Ok(text) = v.to_str() else { continue };
            for element in text.split(',') {
                for pair in element.split(';') {
                    let Some((k, v)) = pair.trim().split_once('=') else {
                        continue;
                    };
                    if k.eq_ignore_ascii_case("for") {
                        let v = v.trim_matches('"');
                        let v = v
                            .strip_prefix('[')
                            .map_or(v, |v| v.split(']').next().unwrap_or(v));
                        if let Ok(ip) = v.parse::<IpAddr>() {
                            hops.push(ip);
                        } else if let Ok(sa) = v.parse::<SocketAddr>() {
                            hops.push(sa.ip());
                        }
                    }
                }
            }
        }
    }
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

thread_local! {
    /// Each thread's draws for weighted steps, seeded once from the OS.
    static RNG: std::cell::RefCell<rand::rngs::SmallRng> =
        std::cell::RefCell::new(rand::SeedableRng::from_os_rng());
}

/// A short plain-text answer.
fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [("content-type", "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn redirect(State(f): State<Fallback>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<Peer>()
        .map(|p| p.addr.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let Some(host) = host_of(req.headers(), req.uri()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "a request names its host: Host: NAME\n",
        );
    };
    let client = client_of(peer, req.headers(), &f.config.trusted_proxies);
    let snap = f.dns.load();
    let geo = f.geo.load_full();
    let choice = RNG.with(|rng| {
        let mut rng = rng.borrow_mut();
        match choose(&snap, geo.as_deref(), &host, client, &mut *rng) {
            Choice::Endpoint { endpoint, .. } => Ok(endpoint.clone()),
            Choice::Nothing => Err(true),
            Choice::Unknown => Err(false),
        }
    });
    let endpoint = match choice {
        Err(false) => return text(StatusCode::NOT_FOUND, "no steered name here\n"),
        Err(true) => {
            let mut resp = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no endpoint is in service for this name; retry shortly\n",
            );
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(f.config.retry_after_secs));
            return resp;
        }
        Ok(endpoint) => endpoint,
    };
    let Some(template) = &endpoint.redirect_url else {
        return text(
            StatusCode::BAD_GATEWAY,
            "the chosen endpoint has no redirect_url\n",
        );
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let target = template.replacen("{path}", path, 1);
    let Ok(location) = HeaderValue::from_str(&target) else {
        return text(
            StatusCode::BAD_REQUEST,
            "the request's path cannot be redirected\n",
        );
    };
    let status = StatusCode::from_u16(f.config.status).unwrap_or(StatusCode::TEMPORARY_REDIRECT);
    let mut resp = (status, [(LOCATION, location)]).into_response();
    if f.config.endpoint_header {
        if let Ok(v) = HeaderValue::from_str(&format!("{}; client={client}", endpoint.id)) {
            resp.headers_mut().insert("x-meridian-endpoint", v);
        }
    }
    resp
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
        let uri: Uri = "/x".parse().unwrap();
        let host = |v: &str| host_of(&headers(&[("host", v)]), &uri);
        assert_eq!(
            host("WWW.Example.com:8080").as_deref(),
            Some("www.example.com")
        );
        assert_eq!(host("www.example.com.").as_deref(), Some("www.example.com"));
        assert_eq!(host("[::1]:80"), None);
        assert_eq!(host("a b"), None);
        assert_eq!(host("www.example.com:http"), None);
        assert_eq!(host_of(&HeaderMap::new(), &uri), None);
        // HTTP/2: :authority and Host must agree
        let abs: Uri = "http://a.example.com/x".parse().unwrap();
        assert_eq!(
            host_of(&HeaderMap::new(), &abs).as_deref(),
            Some("a.example.com")
        );
        assert_eq!(host_of(&headers(&[("host", "b.example.com")]), &abs), None);
    }

    #[test]
    fn clients() {
        let trusted: Vec<ipnet::IpNet> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let xff = headers(&[("x-forwarded-for", "203.0.113.9, 192.0.2.7, 10.1.1.1")]);
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        // the right-most untrusted hop
        assert_eq!(
            client_of(peer, &xff, &trusted),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
        // an untrusted peer's headers mean nothing
        let stranger: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(client_of(stranger, &xff, &trusted), stranger);
        let fwd = headers(&[(
            "forwarded",
            "for=198.51.100.3;proto=https, for=\"[2001:db8::1]:4711\"",
        )]);
        assert_eq!(
            client_of(peer, &fwd, &trusted),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        // nothing but trusted hops: the peer
        let only = headers(&[("x-forwarded-for", "10.0.0.5")]);
        assert_eq!(client_of(peer, &only, &trusted), peer);
    }
}
