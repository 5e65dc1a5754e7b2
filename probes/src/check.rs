//! Running one check against one target: TCP connect, or an HTTP(S)
//! request through reqwest with rustls, timed.
//!
//! Every probe opens a fresh connection (no pooling, so connection time is
//! measured every time and a half-dead server cannot hide behind a kept-alive
//! connection) and follows no redirects (a 3xx is a status like any other).
//! Connection set-up is timed inside reqwest's connector layer and handed
//! back through a task-local, since the connector runs in the probe's task
//! when pooling is off.
//!
//! Every address a probe connects to passes the agent's
//! [`AddressPolicy`] first: literal addresses before the probe, names as
//! they are resolved (a resolver that drops refused addresses), so a spec
//! cannot point agents at a metadata service, not even through DNS.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use std::net::SocketAddr;
use std::sync::Arc;

use meridian_config::policy::AddressPolicy;
use meridian_config::zone::CheckKind;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::targets::Target;

/// The longest body prefix read for a body match.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What one probe found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub ok: bool,
    pub connect_ms: Option<f64>,
    pub ttfb_ms: Option<f64>,
    pub error: Option<String>,
}

impl Outcome {
    fn failed(error: String, connect: Option<Duration>) -> Outcome {
        Outcome {
            ok: false,
            connect_ms: connect.map(ms),
            ttfb_ms: None,
            error: Some(error),
        }
    }
}

/// Milliseconds, to the microsecond (finer is noise, and costs bytes in
/// every report).
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1_000.0
}

tokio::task_local! {
    static CONNECTED: Cell<Option<Duration>>;
}

/// The request header that tells a backend which probe region asks.
pub const REGION_HEADER: &str = "x-meridian-probe-region";

/// Runs checks; holds the two shared HTTP clients (verifying and not).
#[derive(Clone)]
pub struct Prober {
    verify: reqwest::Client,
    insecure: reqwest::Client,
    /// For one https target with a `host`: a client that resolves that
    /// host to the target (see [`Prober::for_target`]).
    pinned: Option<reqwest::Client>,
    region: Option<String>,
    policy: Arc<AddressPolicy>,
}

impl Prober {
    /// Builds the clients. A process-wide rustls crypto provider must be
    /// installed first. HTTP checks name `region` in [`REGION_HEADER`];
    /// every connection passes `policy`.
    pub fn new(region: Option<&str>, policy: AddressPolicy) -> Result<Prober, reqwest::Error> {
        let policy = Arc::new(policy);
        Ok(Prober {
            verify: client(true, &policy)?,
            insecure: client(false, &policy)?,
            pinned: None,
            region: region.map(String::from),
            policy,
        })
    }

    /// A prober for `target` alone: an https check with a `host` gets its
    /// SNI-pinned client built once here rather than on every probe. (If
    /// that fails, each probe reports why.)
    pub fn for_target(&self, target: &Target) -> Prober {
        let c = &target.check;
        let pinned = match (&c.host, c.kind) {
            (Some(host), CheckKind::Https) => {
                resolve_to(host, target, c.tls_verify, &self.policy).ok()
            }
            _ => None,
        };
        Prober {
            pinned,
            ..self.clone()
        }
    }

    /// Runs `target`'s check once, within its timeout.
    pub async fn probe(&self, target: &Target) -> Outcome {
        let timeout = Duration::from_millis(target.check.timeout_ms);
        if let Ok(ip) = target.host.parse::<std::net::IpAddr>() {
            if let Err(e) = self.policy.permits(ip) {
                return Outcome::failed(format!("not probed: {e}"), None);
            }
        }
        match target.check.kind {
            CheckKind::Tcp => tcp(target, timeout, &self.policy).await,
            CheckKind::Http | CheckKind::Https => {
                CONNECTED
                    .scope(Cell::new(None), self.http(target, timeout))
                    .await
            }
        }
    }

    async fn http(&self, t: &Target, timeout: Duration) -> Outcome {
        let c = &t.check;
        let https = c.kind == CheckKind::Https;
        let scheme = if https { "https" } else { "http" };
        // For https with a Host, connect to the target but verify (and
        // send SNI for) the host: a client resolving that name to it.
        let sni_client;
        let client = match (&c.host, https) {
            (Some(_), true) if self.pinned.is_some() => self.pinned.as_ref().expect("checked"),
            (Some(host), true) => match resolve_to(host, t, c.tls_verify, &self.policy) {
                Ok(cl) => {
                    sni_client = cl;
                    &sni_client
                }
                Err(e) => return Outcome::failed(format!("building the client: {e}"), None),
            },
            _ if c.tls_verify => &self.verify,
            _ => &self.insecure,
        };
        let url_host = match (&c.host, https) {
            (Some(host), true) => format!("{host}:{}", t.port),
            _ => t.authority(),
        };
        let url = format!("{scheme}://{url_host}{}", c.path);
        // the URL parser reads some host names as addresses (2130706433):
        // those never reach the resolver, so judge them here
        if let Some(host) = reqwest::Url::parse(&url).ok().and_then(|u| {
            u.host_str()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
        }) {
            if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                if let Err(e) = self.policy.permits(ip) {
                    return Outcome::failed(format!("not probed: {e}"), None);
                }
            }
        }
        let method = if c.method == "HEAD" {
            reqwest::Method::HEAD
        } else {
            reqwest::Method::GET
        };
        let mut req = client
            .request(method, &url)
            .timeout(timeout)
            .header(reqwest::header::USER_AGENT, &c.user_agent);
        if let (Some(host), false) = (&c.host, https) {
            req = req.header(reqwest::header::HOST, host);
        }
        if let Some(r) = &self.region {
            req = req.header(REGION_HEADER, r);
        }
        let start = Instant::now();
        let sent = req.send().await;
        let connect = CONNECTED.try_with(Cell::get).ok().flatten();
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return Outcome::failed(describe(&e), connect),
        };
        let ttfb = start.elapsed();
        let status = resp.status().as_u16();
        if !c
            .expect_status
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&status))
        {
            return Outcome {
                ttfb_ms: Some(ms(ttfb)),
                ..Outcome::failed(format!("HTTP status {status} is not expected"), connect)
            };
        }
        if let Some(want) = &c.body {
            let left = timeout.saturating_sub(start.elapsed());
            match tokio::time::timeout(left, read_prefix(resp)).await {
                Ok(Ok(body)) if contains(&body, want.as_bytes()) => {}
                Ok(Ok(_)) => {
                    return Outcome {
                        ttfb_ms: Some(ms(ttfb)),
                        ..Outcome::failed(
                            format!("the body's first {BODY_LIMIT} bytes do not contain {want:?}"),
                            connect,
                        )
                    }
                }
                Ok(Err(e)) => {
                    return Outcome::failed(format!("reading the body: {}", describe(&e)), connect)
                }
                Err(_) => return Outcome::failed("timed out reading the body".into(), connect),
            }
        }
        Outcome {
            ok: true,
            connect_ms: connect.map(ms),
            ttfb_ms: Some(ms(ttfb)),
            error: None,
        }
    }
}

/// The addresses `host` resolves to that `policy` permits; an error that
/// says why when there are none.
async fn permitted(
    host: &str,
    port: u16,
    policy: &AddressPolicy,
) -> Result<Vec<SocketAddr>, String> {
    let all: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("resolving {host}: {e}"))?
        .collect();
    let mut refused = None;
    let ok: Vec<SocketAddr> = all
        .into_iter()
        .filter(|a| match policy.permits(a.ip()) {
            Ok(()) => true,
            Err(e) => {
                refused = Some(e);
                false
            }
        })
        .collect();
    match (ok.is_empty(), refused) {
        (true, Some(why)) => Err(format!("not probed: {host} resolves to {why}")),
        (true, None) => Err(format!("{host} resolves to no address")),
        (false, _) => Ok(ok),
    }
}

/// A resolver for the HTTP clients that drops the addresses the policy
/// refuses.
struct Guarded(Arc<AddressPolicy>);

impl reqwest::dns::Resolve for Guarded {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let addrs = permitted(name.as_str(), 0, &policy).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

async fn tcp(t: &Target, timeout: Duration, policy: &AddressPolicy) -> Outcome {
    let start = Instant::now();
    let connect = async {
        let addrs = permitted(&t.host, t.port, policy).await?;
        TcpStream::connect(&addrs[..])
            .await
            .map_err(|e| format!("connect: {e}"))
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(mut s)) => {
            let took = start.elapsed();
            let _ = s.shutdown().await;
            Outcome {
                ok: true,
                connect_ms: Some(ms(took)),
                ttfb_ms: None,
                error: None,
            }
        }
        Ok(Err(e)) => Outcome::failed(e, None),
        Err(_) => Outcome::failed(
            format!("no connection within {} ms", timeout.as_millis()),
            None,
        ),
    }
}

fn builder(verify: bool, policy: &Arc<AddressPolicy>) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .dns_resolver(Guarded(policy.clone()))
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .http1_only()
        .tls_danger_accept_invalid_certs(!verify)
        .connector_layer(TimeConnect)
}

fn client(verify: bool, policy: &Arc<AddressPolicy>) -> Result<reqwest::Client, reqwest::Error> {
    builder(verify, policy).build()
}

fn resolve_to(
    host: &str,
    t: &Target,
    verify: bool,
    policy: &Arc<AddressPolicy>,
) -> Result<reqwest::Client, String> {
    let ip: std::net::IpAddr = t.host.parse().map_err(|_| {
        format!(
            "an https check with a Host needs an IP check address, got {}",
            t.host
        )
    })?;
    builder(verify, policy)
        .resolve(host, std::net::SocketAddr::new(ip, t.port))
        .build()
        .map_err(|e| e.to_string())
}

async fn read_prefix(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < BODY_LIMIT {
        match resp.chunk().await? {
            Some(chunk) => body.extend_from_slice(&chunk),
            None => break,
        }
    }
    body.truncate(BODY_LIMIT);
    Ok(body)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// reqwest's error with its causes, which say what actually went wrong
/// (refused, reset, certificate, parse).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A connector layer that records how long connecting took.
#[derive(Clone)]
struct TimeConnect;

impl<S> tower_layer::Layer<S> for TimeConnect {
    type Service = Timed<S>;
    fn layer(&self, inner: S) -> Timed<S> {
        Timed(inner)
    }
}

#[derive(Clone)]
struct Timed<S>(S);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, R> tower_service::Service<R> for Timed<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let connecting = self.0.call(req);
        Box::pin(async move {
            let start = Instant::now();
            let out = connecting.await;
            if out.is_ok() {
                let _ = CONNECTED.try_with(|c| c.set(Some(start.elapsed())));
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_config::zone::Check;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A prober for tests; installs the process-wide provider first, since
    /// tests run in any order.
    fn prober(region: Option<&str>) -> Prober {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Prober::new(region, AddressPolicy::default()).unwrap()
    }

    fn target(kind: CheckKind, port: u16, edit: impl FnOnce(&mut Check)) -> Target {
        let spec = meridian_config::zone::parse(
            "s.yaml",
            "regions: {r: {}}\npools:\n  p:\n    check: {kind: tcp, port: 1}\n    endpoints: [{id: e, address: 127.0.0.1, region: r}]\n",
        )
        .expect("valid");
        let mut check = spec.pools["p"].check.clone().expect("check");
        check.kind = kind;
        check.port = port;
        check.timeout_ms = 500;
        edit(&mut check);
        Target {
            pool: "p".into(),
            endpoint: "e".into(),
            host: "127.0.0.1".into(),
            port,
            check,
        }
    }

    /// Serves each connection with `reply` (after reading the request head)
    /// for as many connections as asked, then stops.
    async fn server(replies: usize, reply: &'static [u8]) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            for _ in 0..replies {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                if reply == b"HANG" {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                } else if reply == b"RESET" {
                    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                } else {
                    let _ = s.write_all(reply).await;
                }
            }
        });
        port
    }

    #[tokio::test]
    async fn http_statuses_bodies_and_broken_servers() {
        let p = prober(Some("r"));
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nall ok\n";
        let port = server(2, ok).await;
        let out = p.probe(&target(CheckKind::Http, port, |_| {})).await;
        assert!(out.ok, "{out:?}");
        assert!(out.connect_ms.is_some() && out.ttfb_ms.is_some(), "{out:?}");
        let out = p
            .probe(&target(CheckKind::Http, port, |c| {
                c.body = Some("missing".into())
            }))
            .await;
        assert!(!out.ok && out.error.unwrap().contains("do not contain"));

        let moved = b"HTTP/1.1 302 Found\r\nlocation: /\r\ncontent-length: 0\r\n\r\n";
        let port = server(2, moved).await;
        // a redirect is not followed: its status decides
        assert!(p.probe(&target(CheckKind::Http, port, |_| {})).await.ok);
        let out = p
            .probe(&target(CheckKind::Http, port, |c| {
                c.expect_status = vec![(200, 299)]
            }))
            .await;
        assert_eq!(
            out.error.as_deref(),
            Some("HTTP status 302 is not expected")
        );

        for (reply, says) in [
            (&b"HANG"[..], "timed out"),
            (b"RESET", ""),
            (b"\x00\x01garbage\r\n\r\n", ""),
        ] {
            let port = server(1, reply).await;
            let out = p.probe(&target(CheckKind::Http, port, |_| {})).await;
            assert!(!out.ok, "{reply:?}: {out:?}");
            assert!(out.error.as_deref().unwrap().contains(says), "{out:?}");
        }
        // nothing listening
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let out = p.probe(&target(CheckKind::Http, port, |_| {})).await;
        assert!(!out.ok && out.connect_ms.is_none(), "{out:?}");
        let out = p.probe(&target(CheckKind::Tcp, port, |_| {})).await;
        assert!(!out.ok);
    }

    /// A spec may name any address; the agent still never connects to a
    /// metadata address, nor to a name that resolves into a denied network.
    #[tokio::test]
    async fn refused_addresses_are_never_connected_to() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let deny_loopback = AddressPolicy {
            allow: Vec::new(),
            deny: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        };
        let strict = Prober::new(None, deny_loopback).unwrap();
        for kind in [CheckKind::Tcp, CheckKind::Http] {
            let mut t = target(kind, port, |_| {});
            t.host = "169.254.169.254".into();
            let out = prober(None).probe(&t).await;
            assert!(
                !out.ok
                    && out
                        .error
                        .as_deref()
                        .unwrap()
                        .contains("not probed: 169.254.169.254 is link-local"),
                "{out:?}"
            );
            t.host = "localhost".into();
            let out = strict.probe(&t).await;
            assert!(
                !out.ok && out.error.as_deref().unwrap().contains("not probed"),
                "{out:?}"
            );
        }
        // nothing reached the listener
        let accepted = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
        assert!(accepted.is_err(), "a refused check connected");
    }

    #[tokio::test]
    async fn tcp_connects_and_times_the_connection() {
        let port = server(1, b"").await;
        let out = prober(None)
            .probe(&target(CheckKind::Tcp, port, |_| {}))
            .await;
        assert!(out.ok && out.connect_ms.is_some(), "{out:?}");
    }
}
