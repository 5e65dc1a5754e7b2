//! The HTTP fallback's redirect mode against a real `meridian serve`: each
//! client is sent to its own region's endpoint (the demo GeoIP database
//! places 192.0.2.0/24 in Europe and 198.51.100.0/24 in America, reached
//! through a trusted proxy's `X-Forwarded-For`), path and query kept to
//! the byte, and every bad request answered with its status.

use std::io::{Read, Write};
use std::time::Duration;

use meridian_steering::geo::build::{asn_database, city_database, demo_asns, demo_places};

use crate::cluster::free_port;
use crate::harness::Server;
use crate::security::connect_from;

const ZONES: &str = r#"zones:
  app.example:
    soa: {rname: hostmaster.app.example.}
    ns: [{name: ns.example.net.}]
    steered:
      - name: www
        type: A
        pool: web
        steps:
          - health
          - geo: {continents: {EU: [eu], NA: [us]}, default: [us]}
          - {first: 1}
      - {name: dead, type: A, pool: dead, steps: [health, {first: 1}], on_all_down: nodata}
      - {name: bare, type: A, pool: bare, steps: [health, {first: 1}]}
      - {name: handover, type: A, ttl: 300, pool: dead, steps: [health, {first: 1}], on_all_down: http_fallback}
      - {name: always, type: A, pool: web, mode: http_fallback, steps: [health, {first: 1}]}
    records:
      - {name: static, type: A, value: 192.0.2.80}
pools:
  web:
    endpoints:
      - {id: eu, address: 192.0.2.10, region: eu, redirect_url: "https://eu.app.example.net{path}"}
      - {id: us, address: 198.51.100.10, region: us, redirect_url: "https://us.app.example.net/base{path}"}
  dead:
    endpoints:
      - {id: gone, address: 192.0.2.11, region: eu, state: disabled, redirect_url: "https://gone.example.net{path}"}
  bare:
    endpoints:
      - {id: plain, address: 192.0.2.12, region: eu}
"#;

/// A reply's status line code and its raw head.
fn exchange(from: &str, to: &str, request: &str) -> (u16, String) {
    let mut s = connect_from(from, to).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("send");
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, reply)
}

fn header<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    reply
        .split("\r\n\r\n")
        .next()?
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

fn get(host: &str, path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
}

#[test]
fn redirects_send_each_client_to_its_own_region() {
    let port = free_port("127.0.0.1");
    let http = format!("127.0.0.1:{port}");
    // a node without a cluster section shows its metrics on a listener of
    // its own, to a read token
    let metrics = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let creds = tempfile::tempdir().expect("tempdir");
    let read = crate::cluster::meridian(
        creds.path(),
        &["token", "new", "--scope", "read", "--file", "tokens"],
    );
    let tokens = std::fs::read(creds.path().join("tokens")).expect("tokens");
    let config = format!(
        "dns: {{listen: [\"127.0.0.1:0\"], udp_sockets: 1}}\ngeoip: {{city: city.mmdb, asn: asn.mmdb}}\nlog: {{level: info}}\nzones: zones.yaml\nhttp:\n  listen: [\"{http}\"]\n  trusted_proxies: [127.0.0.1/32]\n  unavailable_page: sorry.html\nmetrics: {{listen: \"{metrics}\", tokens: tokens}}\n"
    );
    let server = Server::start_files(
        ZONES,
        &config,
        &[
            ("city.mmdb", city_database(&demo_places()).unwrap()),
            ("asn.mmdb", asn_database(&demo_asns()).unwrap()),
            ("sorry.html", b"<h1>Back soon</h1>\n".to_vec()),
            ("tokens", tokens),
        ],
    );
    let odd = "/a%20b/%E2%82%AC;x=1?q=1&r=%0D%0A&s=%22%3C";
    // a slowloris: headers begun and never finished are cut off by the
    // header timeout (10 s), while everyone else is served
    let slow = {
        let http = http.clone();
        std::thread::spawn(move || {
            let mut s = connect_from("127.0.0.3", &http).expect("connect");
            s.write_all(b"GET / HTTP/1.1\r\nHost: www.app.example\r\nX-A: ")
                .expect("send");
            s.set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            let started = std::time::Instant::now();
            let mut reply = Vec::new();
            let read = s.read_to_end(&mut reply);
            (read.is_ok(), started.elapsed(), reply)
        })
    };

    // a European client behind the trusted proxy: to eu, path and query kept
    let (status, reply) = exchange(
        "127.0.0.1",
        &http,
        &get(
            "WWW.App.Example:80",
            odd,
            "X-Forwarded-For: 203.0.113.250, 192.0.2.7\r\n",
        ),
    );
    assert_eq!(status, 307, "{reply}");
    assert_eq!(
        header(&reply, "location"),
        Some(format!("https://eu.app.example.net{odd}").as_str()),
        "{reply}"
    );
    assert!(
        header(&reply, "x-meridian-endpoint")
            .is_some_and(|v| v == "eu; client=192.0.2.7; by=x-forwarded-for; region=eu"),
        "{reply}"
    );
    assert_eq!(header(&reply, "cache-control"), Some("no-store"), "{reply}");
    // an American one: to us, under its base path
    let (status, reply) = exchange(
        "127.0.0.1",
        &http,
        &get(
            "www.app.example",
            "/x?y",
            "Forwarded: for=198.51.100.9;proto=https\r\n",
        ),
    );
    assert_eq!(status, 307, "{reply}");
    assert_eq!(
        header(&reply, "location"),
        Some("https://us.app.example.net/base/x?y")
    );
    // an untrusted peer's X-Forwarded-For means nothing: the peer (no
    // place in the database) gets the default region
    let (status, reply) = exchange(
        "127.0.0.2",
        &http,
        &get("www.app.example", "/", "X-Forwarded-For: 192.0.2.7\r\n"),
    );
    assert_eq!(status, 307, "{reply}");
    assert!(
        header(&reply, "location").is_some_and(|l| l.starts_with("https://us.")),
        "{reply}"
    );

    // nothing in service: 503 with Retry-After
    let (status, reply) = exchange("127.0.0.1", &http, &get("dead.app.example", "/", ""));
    assert_eq!(status, 503, "{reply}");
    assert_eq!(header(&reply, "retry-after"), Some("5"));
    // with the operator's page
    assert_eq!(
        header(&reply, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(reply.ends_with("\r\n\r\n<h1>Back soon</h1>\n"), "{reply}");
    // an endpoint with nowhere to send the client
    let (status, reply) = exchange("127.0.0.1", &http, &get("bare.app.example", "/", ""));
    assert_eq!(status, 502, "{reply}");
    // a name that is not steered, or not ours
    for host in ["static.app.example", "nope.app.example", "other.example"] {
        let (status, reply) = exchange("127.0.0.1", &http, &get(host, "/", ""));
        assert_eq!(status, 404, "{host}: {reply}");
    }
    let (status, reply) = exchange("127.0.0.1", &http, "GET / HTTP/1.0\r\n\r\n");
    assert_eq!(status, 400, "no Host: {reply}");
    // no name: an address, a port that is none, two Hosts
    for host in [
        "[::1]",
        "127.0.0.1",
        "www.app.example:",
        "www.app.example:99999",
    ] {
        let (status, reply) = exchange("127.0.0.1", &http, &get(host, "/", ""));
        assert_eq!(status, 400, "{host}: {reply}");
    }
    let (status, reply) = exchange(
        "127.0.0.1",
        &http,
        &get("www.app.example", "/", "Host: other.example\r\n"),
    );
    assert_eq!(status, 400, "two Hosts: {reply}");
    // a CRLF cannot ride in on the path: the request line is refused
    let (status, reply) = exchange(
        "127.0.0.1",
        &http,
        "GET /a\rSet-Cookie: x=1 HTTP/1.1\r\nHost: www.app.example\r\n\r\n",
    );
    assert_eq!(status, 400, "{reply}");
    assert!(
        !reply.to_ascii_lowercase().contains("set-cookie"),
        "{reply}"
    );
    // a path that climbs is kept as it is: the target resolves it
    let (status, reply) = exchange(
        "127.0.0.1",
        &http,
        &get("www.app.example", "/../../etc/passwd?../x", ""),
    );
    assert_eq!(status, 307, "{reply}");
    assert_eq!(
        header(&reply, "location"),
        Some("https://us.app.example.net/base/../../etc/passwd?../x")
    );
    // too many header bytes
    let big = format!("X-Big: {}\r\n", "a".repeat(64 * 1024));
    let (status, reply) = exchange("127.0.0.1", &http, &get("www.app.example", "/", &big));
    assert!(
        status == 431 || status == 400 || status == 0,
        "oversized headers: {status} {reply}"
    );
    // and it still serves
    let (status, _) = exchange("127.0.0.1", &http, &get("www.app.example", "/", ""));
    assert_eq!(status, 307);

    // DNS hands clients over: always, or when nothing is left, with the
    // fallback's address and a short TTL
    let d = server.dig(&["always.app.example", "A"]);
    assert_eq!(d.answers("A"), ["127.0.0.1"], "{d:?}");
    let d = server.dig(&["handover.app.example", "A"]);
    assert_eq!(d.answers("A"), ["127.0.0.1"], "{d:?}");
    assert!(d.answer.iter().all(|r| r.ttl <= 30), "{d:?}");
    // the fallback steers each request of `always` itself
    let (status, reply) = exchange("127.0.0.1", &http, &get("always.app.example", "/a", ""));
    assert_eq!(status, 307, "{reply}");
    // nothing is back for `handover` yet; once its endpoint is, both DNS
    // and the fallback send clients to it
    let (status, _) = exchange("127.0.0.1", &http, &get("handover.app.example", "/a", ""));
    assert_eq!(status, 503);
    std::fs::write(
        server.zones_path(),
        ZONES.replace("state: disabled", "state: enabled"),
    )
    .expect("zones");
    let skip = server.log_len();
    server.hangup();
    assert!(
        server.wait_for_log("zone spec reloaded", skip),
        "{}",
        server.logs()
    );
    let (status, reply) = exchange("127.0.0.1", &http, &get("handover.app.example", "/a?b", ""));
    assert_eq!(status, 307, "{reply}");
    assert_eq!(
        header(&reply, "location"),
        Some("https://gone.example.net/a?b")
    );
    assert_eq!(
        server.dig(&["handover.app.example", "A"]).answers("A"),
        ["192.0.2.11"]
    );
    // what the fallback answered, counted by status
    let (status, m) = crate::harness::http_get(&metrics, "/metrics", Some(read.trim()));
    assert_eq!(status, 200, "{m}");
    let redirects =
        crate::harness::metric(&m, "meridian_http_requests_total", &[("status", "307")]);
    assert!(redirects.is_some_and(|n| n >= 3.0), "{m}");
    assert!(crate::harness::metric(&m, "meridian_dns_queries_total", &[("qtype", "A")]).is_some());
    assert_eq!(crate::harness::http_get(&metrics, "/metrics", None).0, 401);
    let (closed, after, reply) = slow.join().expect("slowloris thread");
    assert!(
        closed && after < Duration::from_secs(25),
        "a connection that never finished its headers was kept {after:?}"
    );
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
        "{reply}"
    );
}

/// A CA, and leaf certificates it signs for DNS names.
struct Pki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fallback test CA");
        let cert = params.self_signed(&key).expect("CA");
        let ca_pem = cert.pem();
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, key).expect("issuer");
        Pki { ca_pem, issuer }
    }

    /// (certificate PEM, key PEM) for `names`.
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        (cert.pem(), key.serialize_pem())
    }
}

/// `curl` over HTTPS to `name` (resolved to `addr`) trusting only the
/// test CA: the status and the Location, or curl's failure.
fn curl(ca: &std::path::Path, addr: &str, name: &str) -> Result<(u16, String), String> {
    let port = addr.rsplit_once(':').expect("port").1;
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "10",
            "-w",
            "%{http_code} %{http_version} %{redirect_url}",
        ])
        .arg("--cacert")
        .arg(ca)
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .arg(format!("https://{name}:{port}/p?q=1"))
        .output()
        .expect("curl");
    if !out.status.success() {
        return Err(format!(
            "curl exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = text.splitn(3, ' ');
    let (code, version, location) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    // ALPN offers h2 first
    assert_eq!(version, "2", "HTTPS answered over HTTP/{version}");
    Ok((code.parse().unwrap_or(0), location.to_string()))
}

#[test]
fn https_picks_certificates_by_name_and_reloads_them() {
    let pki = Pki::new();
    let (a_cert, a_key) = pki.leaf(&["www.a.test"]);
    let (b_cert, b_key) = pki.leaf(&["*.b.test"]);
    let zones = r#"zones:
  a.test:
    soa: {rname: hostmaster.a.test.}
    ns: [{name: ns.example.net.}]
    steered:
      - {name: www, type: A, pool: a, steps: [health, {first: 1}]}
      - {name: new, type: A, pool: a, steps: [health, {first: 1}]}
  b.test:
    soa: {rname: hostmaster.b.test.}
    ns: [{name: ns.example.net.}]
    steered:
      - {name: www, type: A, pool: b, steps: [health, {first: 1}]}
pools:
  a:
    endpoints: [{id: a1, address: 192.0.2.1, region: eu, redirect_url: "https://a1.example.net{path}"}]
  b:
    endpoints: [{id: b1, address: 192.0.2.2, region: eu, redirect_url: "https://b1.example.net{path}"}]
"#;
    let https = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let config = format!(
        "dns: {{listen: [\"127.0.0.1:0\"], udp_sockets: 1}}\nlog: {{level: info}}\nzones: zones.yaml\nhttp:\n  tls:\n    listen: [\"{https}\"]\n    certs:\n      - {{cert: a.pem, key: a.key}}\n      - {{cert: b.pem, key: b.key}}\n"
    );
    let server = Server::start_files(
        zones,
        &config,
        &[
            ("ca.pem", pki.ca_pem.clone().into_bytes()),
            ("a.pem", a_cert.into_bytes()),
            ("a.key", a_key.into_bytes()),
            ("b.pem", b_cert.into_bytes()),
            ("b.key", b_key.into_bytes()),
        ],
    );
    let dir = server.dir.path().to_path_buf();
    let ca = dir.join("ca.pem");
    // each name gets its own certificate (curl checks the name)
    assert_eq!(
        curl(&ca, &https, "www.a.test"),
        Ok((307, "https://a1.example.net/p?q=1".into()))
    );
    assert_eq!(
        curl(&ca, &https, "www.b.test"),
        Ok((307, "https://b1.example.net/p?q=1".into()))
    );
    // no certificate names new.a.test yet
    assert!(curl(&ca, &https, "new.a.test").is_err());

    // a new certificate for a.test, with one more name: SIGHUP takes it
    let (a2_cert, a2_key) = pki.leaf(&["www.a.test", "new.a.test"]);
    std::fs::write(dir.join("a.pem"), a2_cert).expect("write");
    std::fs::write(dir.join("a.key"), a2_key).expect("write");
    let skip = server.log_len();
    server.hangup();
    assert!(
        server.wait_for_log("HTTPS certificates reloaded", skip),
        "{}",
        server.logs()
    );
    assert_eq!(
        curl(&ca, &https, "new.a.test"),
        Ok((307, "https://a1.example.net/p?q=1".into()))
    );

    // a broken certificate is refused with a log line; the old ones serve
    std::fs::write(dir.join("b.pem"), "not a certificate").expect("write");
    let skip = server.log_len();
    server.hangup();
    assert!(
        server.wait_for_log("HTTPS certificates not reloaded", skip),
        "{}",
        server.logs()
    );
    assert_eq!(
        curl(&ca, &https, "www.b.test"),
        Ok((307, "https://b1.example.net/p?q=1".into()))
    );
    assert_eq!(
        curl(&ca, &https, "new.a.test"),
        Ok((307, "https://a1.example.net/p?q=1".into()))
    );
}

/// One HTTP/2 request with prior knowledge (h2c) to `to`: the status and
/// the Location.
async fn h2(to: &str, uri: &str, host: Option<&str>) -> (u16, String) {
    let (mut send, _conn) = crate::harness::h2c(to).await;
    let mut req = hyper::Request::get(uri);
    if let Some(h) = host {
        req = req.header("host", h);
    }
    let resp = send
        .send_request(
            req.body(http_body_util::Empty::<hyper::body::Bytes>::new())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().expect("ascii").to_string())
        .unwrap_or_default();
    (resp.status().as_u16(), location)
}

#[test]
fn http2_is_steered_and_a_mismatched_authority_refused() {
    let port = free_port("127.0.0.1");
    let http = format!("127.0.0.1:{port}");
    let config = format!(
        "dns: {{listen: [\"127.0.0.1:0\"], udp_sockets: 1}}\nlog: {{level: info}}\nzones: zones.yaml\nhttp:\n  listen: [\"{http}\"]\n"
    );
    let _server = Server::start_config(ZONES, &config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // :authority names the host; the client (no GeoIP here) gets the
        // default region
        assert_eq!(
            h2(&http, "http://www.app.example/x?y", None).await,
            (307, "https://us.app.example.net/base/x?y".to_string())
        );
        // a Host that agrees with :authority is fine
        assert_eq!(
            h2(&http, "http://www.app.example/", Some("WWW.app.example"))
                .await
                .0,
            307
        );
        // one that does not is a bad request, whichever it names
        assert_eq!(
            h2(&http, "http://www.app.example/", Some("static.app.example"))
                .await
                .0,
            400
        );
        assert_eq!(
            h2(&http, "http://nowhere.example/", Some("www.app.example"))
                .await
                .0,
            400
        );
    });
}

#[test]
fn dns_hands_over_until_the_probes_see_an_endpoint_back() {
    // two endpoints whose checks find nothing listening, yet
    let ports = [free_port("127.0.0.1"), free_port("127.0.0.1")];
    let zones = format!(
        r#"zones:
  app.example:
    soa: {{rname: hostmaster.app.example.}}
    ns: [{{name: ns.example.net.}}]
    steered:
      - {{name: back, type: A, pool: web, steps: [health, {{first: 1}}], on_all_down: http_fallback}}
regions: {{eu: {{}}}}
pools:
  web:
    check: {{kind: tcp, interval: 1s, timeout: 500ms, rise: 1, fall: 1}}
    endpoints:
      - {{id: one, address: 192.0.2.21, region: eu, check_address: "127.0.0.1:{}", redirect_url: "https://one.example.net{{path}}"}}
      - {{id: two, address: 192.0.2.22, region: eu, check_address: "127.0.0.1:{}", redirect_url: "https://two.example.net{{path}}"}}
"#,
        ports[0], ports[1]
    );
    let port = free_port("127.0.0.1");
    let http = format!("127.0.0.1:{port}");
    let config = format!(
        "dns: {{listen: [\"127.0.0.1:0\"], udp_sockets: 1}}\nlog: {{level: info}}\nzones: zones.yaml\nprobe: {{region: eu}}\nhttp:\n  listen: [\"{http}\"]\n"
    );
    let server = Server::start_config(&zones, &config);
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        for _ in 0..300 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{what} never happened:\n{}", server.logs());
    };
    // the probes find both down: DNS answers the fallback, which has
    // nowhere to send anyone yet
    wait("DNS handing over", &|| {
        server.dig(&["back.app.example", "A"]).answers("A") == ["127.0.0.1"]
    });
    let (status, reply) = exchange("127.0.0.1", &http, &get("back.app.example", "/a", ""));
    assert_eq!(status, 503, "{reply}");
    // the second endpoint comes back first: the probes see it, and the
    // fallback sends the clients DNS handed over to it
    let _two = std::net::TcpListener::bind(("127.0.0.1", ports[1])).expect("bind");
    wait("the fallback redirecting", &|| {
        exchange("127.0.0.1", &http, &get("back.app.example", "/a?b", "")).0 == 307
    });
    let (_, reply) = exchange("127.0.0.1", &http, &get("back.app.example", "/a?b", ""));
    assert_eq!(
        header(&reply, "location"),
        Some("https://two.example.net/a?b"),
        "{reply}"
    );
    assert_eq!(
        server.dig(&["back.app.example", "A"]).answers("A"),
        ["192.0.2.22"]
    );
}
