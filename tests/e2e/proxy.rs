//! The HTTP fallback's proxy mode against a real `meridian serve` and
//! backends on loopback sockets: requests are forwarded to the endpoint
//! steering chose with the forwarding headers a backend needs, a refused
//! connection or a 503 moves an idempotent request to the next candidate
//! while a POST is never sent twice, and large bodies stream both ways
//! through the node in bounded memory.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::free_port;
use crate::harness::Server;

/// How a test backend answers.
#[derive(Clone, Copy)]
enum Behaviour {
    /// `GET /echo`: the request's head back; `PUT /upload`: the body's
    /// length; `GET /download/N`: N bytes; anything else: 200.
    Serve,
    /// 503 to everything.
    Busy,
    /// 200 at once, then reads the body (as some servers answer a POST
    /// they refuse).
    Early,
}

/// A plain HTTP/1.1 backend on 127.0.0.1, one thread per connection,
/// keep-alive, stopped on drop. It counts the requests it got.
struct Backend {
    port: u16,
    hits: Arc<AtomicUsize>,
    /// Connections accepted.
    accepts: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    fn start(behaviour: Behaviour) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let accepts = Arc::new(AtomicUsize::new(0));
        let (h, s, a) = (hits.clone(), stop.clone(), accepts.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        a.fetch_add(1, Ordering::SeqCst);
                        let h = h.clone();
                        std::thread::spawn(move || serve(conn, behaviour, &h));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Backend {
            port,
            hits,
            accepts,
            stop,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(conn: TcpStream, behaviour: Behaviour, hits: &AtomicUsize) {
    conn.set_nonblocking(false).expect("blocking");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut out = conn.try_clone().expect("clone");
    let mut r = BufReader::new(conn);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        hits.fetch_add(1, Ordering::SeqCst);
        let length: u64 = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.trim().parse().expect("length"));
        if let Behaviour::Early = behaviour {
            let early = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
            if out.write_all(early.as_bytes()).is_err() {
                return;
            }
        }
        let chunked = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .any(|(n, v)| {
                n.eq_ignore_ascii_case("transfer-encoding")
                    && v.trim().eq_ignore_ascii_case("chunked")
            });
        let received = if chunked {
            read_chunked(&mut r)
        } else {
            std::io::copy(&mut (&mut r).take(length), &mut std::io::sink()).expect("body")
        };
        let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let reply = |out: &mut TcpStream, status: &str, body: &[u8]| {
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n",
                body.len()
            );
            out.write_all(head.as_bytes())
                .and_then(|()| out.write_all(body))
        };
        let sent = match behaviour {
            Behaviour::Early => Ok(()),
            Behaviour::Busy => reply(&mut out, "503 Service Unavailable", b"busy\n"),
            Behaviour::Serve if target == "/echo" => reply(&mut out, "200 OK", head.as_bytes()),
            Behaviour::Serve if target == "/upload" => reply(
                &mut out,
                "200 OK",
                format!("received {received}").as_bytes(),
            ),
            Behaviour::Serve if target.starts_with("/download/") => {
                let n: usize = target["/download/".len()..].parse().expect("size");
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
                let chunk = vec![b'x'; 64 * 1024];
                let mut left = n;
                let mut sent = out.write_all(head.as_bytes());
                while left > 0 && sent.is_ok() {
                    let k = left.min(chunk.len());
                    sent = out.write_all(&chunk[..k]);
                    left -= k;
                }
                sent
            }
            Behaviour::Serve => reply(&mut out, "200 OK", b"ok\n"),
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Reads a chunked body (and its trailers): its length.
fn read_chunked(r: &mut BufReader<TcpStream>) -> u64 {
    let mut total = 0;
    loop {
        let mut size = String::new();
        r.read_line(&mut size).expect("chunk size");
        let n = u64::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16).expect("hex");
        if n == 0 {
            // trailers, to the empty line
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    return total;
                }
            }
        }
        total += std::io::copy(&mut r.take(n), &mut std::io::sink()).expect("chunk");
        let mut crlf = String::new();
        r.read_line(&mut crlf).expect("chunk end");
    }
}

/// Sends `head` (and `body_len` bytes of body) to `to` and reads the whole
/// reply: its status, head, and the body's length and first bytes.
fn exchange(to: &str, head: &str, body_len: usize) -> (u16, String, usize, String) {
    let mut s = TcpStream::connect(to).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    s.write_all(head.as_bytes()).expect("send head");
    let chunk = vec![b'u'; 64 * 1024];
    let mut left = body_len;
    while left > 0 {
        let k = left.min(chunk.len());
        s.write_all(&chunk[..k]).expect("send body");
        left -= k;
    }
    let mut r = BufReader::new(s);
    let mut reply_head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        reply_head.push_str(&line);
    }
    let status = reply_head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // count the body without keeping it
    let mut first = vec![0u8; 4096];
    let n = r.read(&mut first).unwrap_or(0);
    first.truncate(n);
    let rest = std::io::copy(&mut r, &mut std::io::sink()).unwrap_or(0) as usize;
    (
        status,
        reply_head,
        n + rest,
        String::from_utf8_lossy(&first).into_owned(),
    )
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// A body of one frame that does not say its length.
struct Unsized(Option<hyper::body::Bytes>);

impl hyper::body::Body for Unsized {
    type Data = hyper::body::Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(self.0.take().map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// An HTTP/2 (prior knowledge) PUT of `body` without a Content-Length:
/// the status.
async fn h2_put(to: &str, uri: &str, body: &'static [u8]) -> u16 {
    let (mut send, _conn) = crate::harness::h2c(to).await;
    let req = hyper::Request::put(uri)
        .body(Unsized(Some(hyper::body::Bytes::from_static(body))))
        .expect("request");
    assert!(!req.headers().contains_key("content-length"));
    let resp = send.send_request(req).await.expect("response");
    resp.status().as_u16()
}

/// The `X-Meridian-Endpoint` of a reply head, or "".
fn endpoint(head: &str) -> &str {
    header(head, "x-meridian-endpoint").unwrap_or("")
}

/// The largest resident set the process has had, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kb * 1024
}

#[test]
fn proxy_mode_forwards_retries_and_streams() {
    let live = Backend::start(Behaviour::Serve);
    let busy = Backend::start(Behaviour::Busy);
    let refused = free_port("127.0.0.1"); // nothing listens there
    let zones = format!(
        r#"zones:
  app.example:
    soa: {{rname: hostmaster.app.example.}}
    ns: [{{name: ns.example.net.}}]
    steered:
      - {{name: www, type: A, pool: refusing, http: proxy, steps: [health, priority, {{first: 1}}]}}
      - {{name: flaky, type: A, pool: busy, http: proxy, steps: [health, priority, {{first: 1}}]}}
      - {{name: files, type: A, pool: live, http: proxy, proxy_host: endpoint, steps: [health, {{first: 1}}]}}
pools:
  refusing:
    endpoints:
      - {{id: refused, address: 127.0.0.1, region: eu, priority: 1, proxy_url: "http://backend.test:{refused}"}}
      - {{id: live, address: 127.0.0.1, region: eu, priority: 2, proxy_url: "http://backend.test:{live}"}}
  busy:
    endpoints:
      - {{id: busy, address: 127.0.0.1, region: eu, priority: 1, proxy_url: "http://backend.test:{busy}"}}
      - {{id: live, address: 127.0.0.1, region: eu, priority: 2, proxy_url: "http://backend.test:{live}"}}
  live:
    endpoints:
      - {{id: live, address: 127.0.0.1, region: eu, proxy_url: "http://backend.test:{live}"}}
"#,
        live = live.port,
        busy = busy.port,
    );
    let port = free_port("127.0.0.1");
    let http = format!("127.0.0.1:{port}");
    let config = format!(
        "dns: {{listen: [\"127.0.0.1:0\"], udp_sockets: 1}}\nlog: {{level: info}}\nzones: zones.yaml\nhttp:\n  listen: [\"{http}\"]\n  proxy: {{max_body_bytes: 200000000}}\n"
    );
    let server = Server::start_config(&zones, &config);

    // the first candidate refuses: a GET goes on to the next, with the
    // client's Host and forwarding headers that are the node's own word
    let (status, head, _, body) = exchange(
        &http,
        "GET /echo HTTP/1.1\r\nHost: www.app.example\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n",
        0,
    );
    assert_eq!(status, 200, "{head}{body}");
    assert_eq!(
        header(&head, "x-meridian-endpoint"),
        Some("live; client=127.0.0.1; by=peer; region=eu"),
        "{head}"
    );
    assert_eq!(header(&head, "via"), Some("1.1 meridian"), "{head}");
    assert!(body.starts_with("GET /echo HTTP/1.1\r\n"), "{body}");
    assert_eq!(header(&body, "host"), Some("www.app.example"), "{body}");
    assert_eq!(
        header(&body, "x-forwarded-for"),
        Some("127.0.0.1"),
        "{body}"
    );
    assert_eq!(header(&body, "x-forwarded-proto"), Some("http"), "{body}");
    assert_eq!(
        header(&body, "x-forwarded-host"),
        Some("www.app.example"),
        "{body}"
    );
    assert_eq!(
        header(&body, "forwarded"),
        Some("for=127.0.0.1;host=\"www.app.example\";proto=http"),
        "{body}"
    );
    assert_eq!(header(&body, "connection"), None, "hop-by-hop: {body}");

    // a POST is never retried: the refused connection is a 502
    let before = live.hits();
    let (status, head, _, _) = exchange(
        &http,
        "POST /order HTTP/1.1\r\nHost: www.app.example\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        0,
    );
    assert_eq!(status, 502, "{head}");
    assert!(endpoint(&head).starts_with("refused;"), "{head}");
    assert_eq!(live.hits(), before, "the POST went to a second endpoint");

    // a 503 moves a GET on, and reaches the client for a POST
    let (status, head, _, _) = exchange(
        &http,
        "GET /x HTTP/1.1\r\nHost: flaky.app.example\r\nConnection: close\r\n\r\n",
        0,
    );
    assert_eq!(status, 200, "{head}");
    assert!(endpoint(&head).starts_with("live;"), "{head}");
    assert_eq!(busy.hits(), 1);
    let before = live.hits();
    let (status, head, _, _) = exchange(
        &http,
        "POST /x HTTP/1.1\r\nHost: flaky.app.example\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        0,
    );
    assert_eq!(status, 503, "{head}");
    assert!(endpoint(&head).starts_with("busy;"), "{head}");
    assert_eq!(busy.hits(), 2);
    assert_eq!(live.hits(), before, "the POST was sent twice");
    // an HTTP/2 PUT whose body has no Content-Length has a body all the
    // same: once sent, it is never sent again
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let status = rt.block_on(h2_put(&http, "http://flaky.app.example/x", b"precious"));
    assert_eq!(status, 503);
    assert_eq!(busy.hits(), 3);
    assert_eq!(
        live.hits(),
        before,
        "the PUT was sent again without its body"
    );
    // never proxied: CONNECT (no tunnels) and TRACE (it would reflect
    // the forwarding headers)
    for (request, want) in [
        (
            "CONNECT www.app.example:443 HTTP/1.1\r\nHost: www.app.example:443\r\nConnection: close\r\n\r\n",
            501,
        ),
        (
            "TRACE /t HTTP/1.1\r\nHost: www.app.example\r\nConnection: close\r\n\r\n",
            405,
        ),
    ] {
        let (status, head, _, _) = exchange(&http, request, 0);
        assert_eq!(status, want, "{request}: {head}");
    }

    // proxy_host: endpoint sends the proxy_url's authority as Host
    let (status, _, _, body) = exchange(
        &http,
        "GET /echo HTTP/1.1\r\nHost: files.app.example\r\nConnection: close\r\n\r\n",
        0,
    );
    assert_eq!(status, 200);
    let expected = format!("backend.test:{}", live.port);
    assert_eq!(header(&body, "host"), Some(expected.as_str()), "{body}");

    // a body past http.proxy.max_body_bytes is refused before it is read
    let (status, head, _, _) = exchange(
        &http,
        "PUT /upload HTTP/1.1\r\nHost: files.app.example\r\nContent-Length: 300000000\r\nConnection: close\r\n\r\n",
        0,
    );
    assert_eq!(status, 413, "{head}");

    // large bodies both ways stream in bounded memory
    let pid = server.pid();
    let big: usize = 64 << 20;
    let before = peak_rss(pid);
    let (status, head, _, body) = exchange(
        &http,
        &format!("PUT /upload HTTP/1.1\r\nHost: files.app.example\r\nContent-Length: {big}\r\nConnection: close\r\n\r\n"),
        big,
    );
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, format!("received {big}"));
    let (status, head, received, _) = exchange(
        &http,
        &format!(
            "GET /download/{big} HTTP/1.1\r\nHost: files.app.example\r\nConnection: close\r\n\r\n"
        ),
        0,
    );
    assert_eq!(status, 200, "{head}");
    assert_eq!(received, big);
    let grew = peak_rss(pid).saturating_sub(before);
    assert!(
        grew < 32 << 20,
        "the node's peak memory grew by {} MiB moving {} MiB each way",
        grew >> 20,
        big >> 20
    );
}

/// A connection from `from` to `to` with a tiny receive buffer, that sends
/// `request` and then reads nothing.
fn stop_reading(from: &str, to: &str, request: &str) -> TcpStream {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    let src: std::net::SocketAddr = format!("{from}:0").parse().expect("addr");
    sock.bind(&src.into()).expect("bind");
    let dst: std::net::SocketAddr = to.parse().expect("addr");
    sock.connect(&dst.into()).expect("connect");
    let mut s: TcpStream = sock.into();
    s.write_all(request.as_bytes()).expect("send");
    s
}

/// A node whose record `NAME.app.example` proxies to a pool `NAME` of one
/// endpoint, the backend on `PORT`, for each `(NAME, PORT)`; `proxy` is
/// the body of its `http.proxy` section. The node, and its fallback's
/// address.
fn proxy_node(records: &[(&str, u16)], proxy: &str) -> (Server, String) {
    let mut steered = String::new();
    let mut pools = String::new();
    for (name, port) in records {
        steered.push_str(&format!(
            "      - {{name: {name}, type: A, pool: {name}, http: proxy, steps: [health, {{first: 1}}]}}\n"
        ));
        pools.push_str(&format!(
            "  {name}:\n    endpoints:\n      - {{id: {name}, address: 127.0.0.1, region: eu, proxy_url: \"http://backend.test:{port}\"}}\n"
        ));
    }
    let zones = format!(
        "zones:\n  app.example:\n    soa: {{rname: hostmaster.app.example.}}\n    ns: [{{name: ns.example.net.}}]\n    steered:\n{steered}pools:\n{pools}"
    );
    let http = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let config = format!(
        "dns: {{listen: [\"127.0.0.1:0\"], udp_sockets: 1}}\nlog: {{level: info}}\nzones: zones.yaml\nhttp:\n  listen: [\"{http}\"]\n  proxy: {{{proxy}}}\n"
    );
    (Server::start_config(&zones, &config), http)
}

#[test]
fn a_client_that_stops_reading_gives_the_endpoint_connections_back() {
    let live = Backend::start(Behaviour::Serve);
    let early = Backend::start(Behaviour::Early);
    let (_server, http) = proxy_node(
        &[("files", live.port), ("early", early.port)],
        "max_connections: 2, idle_timeout_secs: 1, max_per_client: 2",
    );
    let huge = "GET /download/4000000000 HTTP/1.1\r\nHost: files.app.example\r\n\r\n";
    // two clients take both endpoint connections and stop reading
    let _stalled: Vec<TcpStream> = (0..2)
        .map(|_| stop_reading("127.0.0.5", &http, huge))
        .collect();
    // that client may not start a third
    std::thread::sleep(Duration::from_millis(300));
    let third = stop_reading("127.0.0.5", &http, huge);
    let mut r = BufReader::new(third);
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    assert!(line.starts_with("HTTP/1.1 503"), "{line}");
    // everyone else is served once the stalled answers' endpoint
    // connections are dropped (within one and a half idle timeouts),
    // while their clients still hold their sockets
    let served = || {
        for _ in 0..50 {
            let (status, _, _, _) = exchange(
                &http,
                "GET /echo HTTP/1.1\r\nHost: files.app.example\r\nConnection: close\r\n\r\n",
                0,
            );
            if status == 200 {
                return true;
            }
            assert_eq!(status, 503);
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    };
    assert!(
        served(),
        "two clients that stopped reading held the endpoint connections"
    );

    // two uploads the endpoint answered early, that go on trickling a
    // byte at a time (each in time for the idle timeout): the answer's
    // end closes their endpoint connections (as nginx does), so they hold
    // nothing
    let post = "POST /up HTTP/1.1\r\nHost: early.app.example\r\nContent-Length: 1000000\r\n\r\nx";
    let done = Arc::new(AtomicBool::new(false));
    let trickles: Vec<_> = (0..2)
        .map(|_| {
            let mut u = stop_reading("127.0.0.6", &http, post);
            let mut r = BufReader::new(u.try_clone().expect("clone"));
            let mut line = String::new();
            r.read_line(&mut line).expect("status line");
            assert!(line.starts_with("HTTP/1.1 200"), "{line}");
            let done = done.clone();
            std::thread::spawn(move || {
                for _ in 0..60 {
                    if done.load(Ordering::Relaxed) || u.write_all(b"x").is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        })
        .collect();
    let again = served();
    done.store(true, Ordering::Relaxed);
    for t in trickles {
        t.join().expect("trickle");
    }
    assert!(
        again,
        "uploads answered early held the endpoint connections"
    );
}

#[test]
fn an_http2_client_that_resets_its_streams_is_cut_off() {
    let live = Backend::start(Behaviour::Serve);
    let (_server, http) = proxy_node(&[("files", live.port)], "");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (cut_after, hits) = rt.block_on(async {
        let (mut send, conn) = crate::harness::h2c(&http).await;
        // a download, given up on as soon as it has begun, again and
        // again, a few milliseconds apart (slower than h2's own guard)
        for i in 0..400 {
            if send.ready().await.is_err() {
                return (Some(i), live.hits());
            }
            let req = hyper::Request::get("http://files.app.example/download/100000000")
                .body(http_body_util::Empty::<hyper::body::Bytes>::new())
                .expect("request");
            let pending = send.send_request(req);
            let _ = tokio::time::timeout(Duration::from_millis(5), pending).await;
        }
        let _ = conn.await;
        (None, live.hits())
    });
    let cut_after = cut_after.expect("400 reset streams and the connection was never cut");
    // cut once more than 128 were reset (the client's own window and
    // hyper's guard may cut it a little later or sooner)
    assert!(cut_after <= 200, "cut only after {cut_after} resets");
    assert!(hits <= 200, "{hits} requests reached the endpoint");
}

#[test]
fn connections_to_endpoints_are_reused() {
    let live = Backend::start(Behaviour::Serve);
    let (_server, http) = proxy_node(&[("files", live.port)], "idle_timeout_secs: 1");
    // requests now and then, with pauses shorter than the idle timeout
    // that add up to more than it: one endpoint connection throughout
    let mut client = TcpStream::connect(&http).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut r = BufReader::new(client.try_clone().expect("clone"));
    for _ in 0..8 {
        client
            .write_all(b"GET /x HTTP/1.1\r\nHost: files.app.example\r\n\r\n")
            .expect("send");
        let mut head = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).expect("reply");
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut body = [0u8; 3];
        r.read_exact(&mut body).expect("body");
        std::thread::sleep(Duration::from_millis(400));
    }
    assert_eq!(
        live.accepts.load(Ordering::SeqCst),
        1,
        "one endpoint connection"
    );
    // HTTP/2 uploads that declare their length and end their stream in a
    // frame of their own reuse it too
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (mut send, _conn) = crate::harness::h2c(&http).await;
        for _ in 0..8 {
            let req = hyper::Request::put("http://files.app.example/upload")
                .header("content-length", "8")
                .body(Unsized(Some(hyper::body::Bytes::from_static(b"precious"))))
                .expect("request");
            let resp = send.send_request(req).await.expect("response");
            assert_eq!(resp.status(), 200);
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .expect("body")
                .to_bytes();
            assert_eq!(&body[..], b"received 8");
        }
    });
    assert_eq!(
        live.accepts.load(Ordering::SeqCst),
        1,
        "one endpoint connection"
    );
}
