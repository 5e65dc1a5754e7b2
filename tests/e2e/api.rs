//! The REST API (`/v1`) against a real three-node cluster: every resource
//! created, changed and deleted through it and seen in `dig` on every
//! node; weights and drains in the answers; every error status provoked,
//! with nothing changed after a refused write; each scope against each
//! route class; a revoked token refused everywhere.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster::{Cluster, Tls, BOUND};
use crate::harness::{dig, query_bytes, udp_exchange};
use crate::security::token;

/// A reply: status, headers (lower-case names), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The JSON error's code and field.
    fn error(&self) -> (String, Option<String>) {
        let v = self.json();
        let e = &v["error"];
        assert!(e["message"].is_string(), "an error message: {}", self.body);
        (
            e["code"].as_str().unwrap_or_default().to_string(),
            e["field"].as_str().map(str::to_string),
        )
    }
}

/// One HTTP/1.1 request with any headers.
fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).expect("send");
    s.write_all(body.as_bytes()).expect("send");
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn get(addr: &str, token: &str, path: &str) -> Reply {
    request(addr, "GET", path, Some(token), &[], "")
}

fn send(addr: &str, token: &str, method: &str, path: &str, body: &Value) -> Reply {
    request(addr, method, path, Some(token), &[JSON], &body.to_string())
}

/// The spec the API tests start from: a weighted `www` over two
/// endpoints, and two regions.
const SEED: &str = "zones:
  glb.example.com:
    soa: {rname: hostmaster.example.com.}
    ns: [{name: ns.example.net.}]
    records:
      - {name: mail, type: A, value: 192.0.2.25}
    steered:
      - {name: www, type: A, ttl: 5, pool: web, steps: [health, weighted, {first: 1}]}
regions:
  eu: {}
  us: {}
pools:
  web:
    endpoints:
      - {id: a, address: 192.0.2.1, region: eu, weight: 50}
      - {id: b, address: 192.0.2.2, region: us, weight: 50}
";

/// The A answers of `name` on `dns`, by raw UDP (no EDNS): the last
/// record's four octets, for a one-answer reply.
fn answer_a(dns: SocketAddr, name: &str, id: u16) -> Option<[u8; 4]> {
    let reply = udp_exchange(dns, &query_bytes(id, name, 1, 0, 1))?;
    let ancount = u16::from_be_bytes([reply[6], reply[7]]);
    (ancount == 1 && reply.len() >= 4).then(|| {
        let n = reply.len();
        [reply[n - 4], reply[n - 3], reply[n - 2], reply[n - 1]]
    })
}

/// Waits until `check` holds for `dig name type` on every node.
fn wait_everywhere(c: &Cluster, args: &[&str], check: impl Fn(&crate::harness::Dig) -> bool) {
    for id in 1..=3 {
        let deadline = Instant::now() + BOUND;
        loop {
            let d = dig(c.node(id).dns(), args);
            if check(&d) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {id}: dig {args:?} gives {:?} {:?}",
                d.status,
                d.answer
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn version(addr: &str, token: &str) -> u64 {
    get(addr, token, "/v1/cluster").json()["version"]
        .as_u64()
        .expect("a version")
}

/// Waits until every node has applied state version `at`.
fn wait_version(c: &Cluster, token: &str, at: u64) {
    for id in 1..=3 {
        let deadline = Instant::now() + BOUND;
        while version(&c.node(id).api, token) < at {
            assert!(Instant::now() < deadline, "node {id} never reached {at}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn every_resource_through_the_api_reaches_every_node() {
    let c = Cluster::start_with(3, Tls::Off, SEED, "", &[]);
    c.wait_healthy(1);
    let leader = c.leader(1);
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    // every write goes to a follower: it forwards to the leader
    let api = c.node(follower).api.clone();
    let api = api.as_str();
    let t = token(&c, "write.token");
    let t = t.as_str();
    let ok = |r: &Reply, what: &str| {
        assert!(
            r.status == 200 || r.status == 201,
            "{what}: {} {}",
            r.status,
            r.body
        );
    };

    // a region, a pool and a steered record on it
    let r = send(
        api,
        t,
        "PUT",
        "/v1/regions/ap",
        &json!({"lat": 19.1, "lon": 72.9}),
    );
    ok(&r, "put region");
    assert_eq!(r.status, 201, "created");
    let r = send(
        api,
        t,
        "PUT",
        "/v1/pools/api",
        &json!({"endpoints": [{"id": "x", "address": "192.0.2.50", "region": "ap"}]}),
    );
    ok(&r, "put pool");
    let r = send(
        api,
        t,
        "PUT",
        "/v1/zones/glb.example.com/steered/api/A",
        &json!({"pool": "api", "ttl": 5, "steps": ["health", {"first": 1}]}),
    );
    ok(&r, "put steered");
    wait_everywhere(&c, &["api.glb.example.com", "A"], |d| {
        d.answers("A") == ["192.0.2.50"]
    });
    // a second endpoint, put on its own
    let r = send(
        api,
        t,
        "PUT",
        "/v1/pools/api/endpoints/y",
        &json!({"address": "192.0.2.51", "region": "ap"}),
    );
    ok(&r, "put endpoint");
    let got = get(api, t, "/v1/pools/api/endpoints/y");
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json()["address"], "192.0.2.51");
    assert_eq!(
        got.header("etag"),
        r.header("etag"),
        "the write's ETag is the read's"
    );
    // a health check on the pool: read, then removed
    let r = send(
        api,
        t,
        "PUT",
        "/v1/pools/api/check",
        &json!({"kind": "tcp", "port": 443, "interval": "5s"}),
    );
    ok(&r, "put check");
    let check = get(api, t, "/v1/pools/api/check").json();
    assert_eq!(check["interval"], "5000ms");
    ok(
        &request(api, "DELETE", "/v1/pools/api/check", Some(t), &[], ""),
        "delete check",
    );
    assert_eq!(get(api, t, "/v1/pools/api/check").status, 404);

    // a static record set: served everywhere, then deleted everywhere
    let r = send(
        api,
        t,
        "PUT",
        "/v1/zones/glb.example.com/records/info/TXT",
        &json!({"ttl": 60, "values": ["hello from the api"]}),
    );
    ok(&r, "put record");
    wait_everywhere(&c, &["info.glb.example.com", "TXT"], |d| {
        d.answers("TXT") == ["\"hello from the api\""]
    });
    ok(
        &request(
            api,
            "DELETE",
            "/v1/zones/glb.example.com/records/info/TXT",
            Some(t),
            &[],
            "",
        ),
        "delete record",
    );
    wait_everywhere(&c, &["info.glb.example.com", "TXT"], |d| {
        d.status == "NXDOMAIN"
    });

    // a whole zone: served, then gone (refused: not ours)
    let zone = json!({
        "soa": {"rname": "hostmaster.example.org."},
        "ns": [{"name": "ns.example.net."}],
        "records": [{"name": "@", "type": "A", "value": "192.0.2.80"}],
    });
    ok(
        &send(api, t, "PUT", "/v1/zones/other.example.org", &zone),
        "put zone",
    );
    wait_everywhere(&c, &["other.example.org", "A"], |d| {
        d.answers("A") == ["192.0.2.80"]
    });
    let listed = get(api, t, "/v1/zones").json();
    assert!(
        listed["zones"]["other.example.org."].is_object(),
        "{listed}"
    );
    ok(
        &request(
            api,
            "DELETE",
            "/v1/zones/other.example.org",
            Some(t),
            &[],
            "",
        ),
        "delete zone",
    );
    wait_everywhere(&c, &["other.example.org", "A"], |d| d.status == "REFUSED");

    // deletes in order: the record, then what it used
    for path in [
        "/v1/zones/glb.example.com/steered/api/A",
        "/v1/pools/api/endpoints/y",
        "/v1/pools/api",
        "/v1/regions/ap",
    ] {
        ok(&request(api, "DELETE", path, Some(t), &[], ""), path);
        assert_eq!(get(api, t, path).status, 404, "{path} is gone");
    }
    wait_everywhere(&c, &["api.glb.example.com", "A"], |d| {
        d.status == "NXDOMAIN"
    });

    // a PUT of what is there changes nothing: same version, same tag
    let before = version(api, t);
    let pool = get(api, t, "/v1/pools/web");
    let again = request(api, "PUT", "/v1/pools/web", Some(t), &[JSON], &pool.body);
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.header("etag"), pool.header("etag"));
    assert_eq!(version(api, t), before, "an idempotent PUT moves nothing");

    // the weight moves the shares: a 90/10 split over 1000 answers
    let r = send(
        api,
        t,
        "PATCH",
        "/v1/pools/web/endpoints/a",
        &json!({"weight": 90}),
    );
    ok(&r, "patch a");
    let r = send(
        api,
        t,
        "PATCH",
        "/v1/pools/web/endpoints/b",
        &json!({"weight": 10}),
    );
    ok(&r, "patch b");
    let at = r.json()["version"].as_u64().expect("version");
    wait_version(&c, t, at);
    let dns = c.node(leader).dns();
    let mut a = 0u32;
    let mut answered = 0u32;
    for i in 0..1000u16 {
        match answer_a(dns, "www.glb.example.com", i) {
            Some([192, 0, 2, 1]) => {
                a += 1;
                answered += 1;
            }
            Some(_) => answered += 1,
            None => {}
        }
    }
    assert!(answered >= 990, "{answered} of 1000 answered");
    let share = f64::from(a) / f64::from(answered);
    // 90 % ± 6 standard deviations of a 1000-draw binomial
    assert!((0.84..=0.96).contains(&share), "a's share is {share}");

    // a drain takes `a` out of every node's answers
    let r = send(
        api,
        t,
        "PATCH",
        "/v1/pools/web/endpoints/a",
        &json!({"state": "drained"}),
    );
    ok(&r, "drain a");
    let at = r.json()["version"].as_u64().expect("version");
    wait_version(&c, t, at);
    for id in 1..=3 {
        for i in 0..200u16 {
            let got = answer_a(c.node(id).dns(), "www.glb.example.com", i);
            assert_eq!(
                got,
                Some([192, 0, 2, 2]),
                "node {id}: a drained endpoint answered"
            );
        }
    }

    // the audit log names who did each change, before and after
    let audit = get(api, t, "/v1/audit?limit=1000").json();
    let entries = audit["entries"].as_array().expect("entries");
    let write_id = t.split('_').nth(1).expect("token id");
    let drain = entries.last().expect("an entry");
    assert_eq!(drain["action"], "PATCH /v1/pools/web/endpoints/a");
    assert_eq!(drain["token"], write_id);
    assert_eq!(drain["after"].as_u64(), Some(at));
    assert_eq!(drain["before"].as_u64(), Some(at - 1));
    assert!(entries.len() >= 14, "{audit}");
}

#[test]
fn refused_requests_are_json_errors_and_change_nothing() {
    let c = Cluster::start_with(3, Tls::Off, SEED, "  api: {max_body_bytes: 4096}\n", &[]);
    c.wait_healthy(1);
    let api = c.node(1).api.clone();
    let api = api.as_str();
    let admin = token(&c, "admin.token");
    let write = token(&c, "write.token");
    let read = token(&c, "read.token");
    let probe = token(&c, "probe-eu.token");
    let w = write.as_str();

    let spec_before = get(api, w, "/v1/spec");
    let version_before = version(api, w);
    let unchanged = |what: &str| {
        let now = get(api, w, "/v1/spec");
        assert_eq!(now.body, spec_before.body, "{what} changed the spec");
        assert_eq!(now.header("etag"), spec_before.header("etag"));
        assert_eq!(version(api, w), version_before, "{what} moved the version");
    };

    // 400: a field out of range, named
    let r = send(
        api,
        w,
        "PUT",
        "/v1/pools/web/endpoints/c",
        &json!({"address": "192.0.2.3", "region": "eu", "weight": 70000}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.error(),
        (
            "invalid".into(),
            Some("pools.web.endpoints[2].weight".into())
        )
    );
    unchanged("an invalid weight");
    let r = send(
        api,
        w,
        "PATCH",
        "/v1/pools/web/endpoints/a",
        &json!({"weight": -1}),
    );
    assert_eq!(
        (r.status, r.error()),
        (400, ("invalid".into(), Some("weight".into())))
    );
    unchanged("an invalid patch");
    let r = request(api, "PUT", "/v1/pools/web", Some(w), &[JSON], "{not json");
    assert_eq!((r.status, r.error().0), (400, "invalid".into()));
    let r = request(
        api,
        "POST",
        "/v1/apply",
        Some(w),
        &[("Content-Type", "application/yaml")],
        "pools:\n  web:\n    endpoints: [{id: a, address: 192.0.2.1, region: eu, wieght: 5}]\n",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.error().1.as_deref(),
        Some("pools.web.endpoints[0].wieght")
    );
    assert_eq!(r.json()["error"]["details"][0]["line"], 3, "{}", r.body);
    unchanged("an invalid apply");

    // a short document nested deep is refused, not a stack overflow
    let deep = format!("zones:\n  {}x\n", "- ".repeat(1000));
    let r = request(
        api,
        "POST",
        "/v1/apply?dry_run=true",
        Some(w),
        &[("Content-Type", "application/yaml")],
        &deep,
    );
    assert_eq!(
        (r.status, r.error().0),
        (400, "invalid".into()),
        "{}",
        r.body
    );
    assert!(r.body.contains("nested deeper"), "{}", r.body);
    // and so is a short document whose aliases stand for millions of nodes
    let items = vec!["1"; 10_000].join(",");
    let aliases = vec!["*a"; 800].join(",");
    let bomb = format!("x: &a [{items}]\ny: [{aliases}]\n");
    let r = request(
        api,
        "POST",
        "/v1/apply?dry_run=true",
        Some(w),
        &[("Content-Type", "application/yaml")],
        &bomb,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("aliases expand"), "{}", r.body);
    // a spec without zones over one with zones is a mistake unless said
    let r = request(
        api,
        "POST",
        "/v1/apply",
        Some(w),
        &[("Content-Type", "application/yaml")],
        "{}",
    );
    assert_eq!(
        (r.status, r.error().0),
        (409, "conflict".into()),
        "{}",
        r.body
    );
    unchanged("an apply of nothing");

    // 404
    let r = get(api, w, "/v1/pools/nope");
    assert_eq!((r.status, r.error().0), (404, "not_found".into()));
    let r = send(
        api,
        w,
        "PATCH",
        "/v1/pools/web/endpoints/nope",
        &json!({"weight": 1}),
    );
    assert_eq!((r.status, r.error().0), (404, "not_found".into()));
    let r = get(api, w, "/v1/no/such/route");
    assert_eq!((r.status, r.error().0), (404, "not_found".into()));
    unchanged("a patch of nothing");

    // 409: the pool is in use
    let r = request(api, "DELETE", "/v1/pools/web", Some(w), &[], "");
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.error().1.expect("a field").contains("steered[0].pool"));
    unchanged("deleting a pool in use");

    // 412: a stale If-Match; the right one works
    let tag = get(api, w, "/v1/pools/web/endpoints/a")
        .header("etag")
        .expect("an ETag")
        .to_string();
    let stale = r#""00000000000000000000000000000000""#;
    let r = request(
        api,
        "PATCH",
        "/v1/pools/web/endpoints/a",
        Some(w),
        &[JSON, ("If-Match", stale)],
        r#"{"weight": 7}"#,
    );
    assert_eq!((r.status, r.error().0), (412, "precondition_failed".into()));
    let r = request(
        api,
        "PUT",
        "/v1/regions/eu",
        Some(w),
        &[JSON, ("If-None-Match", "*")],
        "{}",
    );
    assert_eq!(r.status, 412, "If-None-Match on what exists: {}", r.body);
    unchanged("a stale If-Match");

    // 413: over the configured body limit
    let big =
        json!({"endpoints": [{"id": "a", "address": "192.0.2.1", "region": "x".repeat(5000)}]});
    let r = send(api, w, "PUT", "/v1/pools/web", &big);
    assert_eq!((r.status, r.error().0), (413, "payload_too_large".into()));
    unchanged("an oversized body");

    // 415
    let r = request(
        api,
        "PATCH",
        "/v1/pools/web/endpoints/a",
        Some(w),
        &[("Content-Type", "text/plain")],
        r#"{"weight": 7}"#,
    );
    assert_eq!(
        (r.status, r.error().0),
        (415, "unsupported_media_type".into())
    );
    unchanged("a wrong content type");

    // slow bodies hold connections, never the in-flight slots (2 here)
    let slow: Vec<TcpStream> = (0..3)
        .map(|i| {
            let mut s = TcpStream::connect(api).expect("connect");
            write!(
                s,
                "PUT /v1/regions/slow{i} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {w}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
            )
            .expect("send");
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(api, w, "/v1/pools").status, 200, "a slot is free");
    drop(slow);
    // the bearer scheme is case-insensitive
    let r = request(
        api,
        "GET",
        "/v1/pools",
        None,
        &[("Authorization", &format!("bearer {w}"))],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // a node's credential may not forward an operator's raw write: only
    // audited API changes, which record the forwarding node
    let secret = token(&c, "cluster.secret");
    let r = request(
        api,
        "POST",
        "/cluster/write",
        Some(&secret),
        &[JSON, ("X-Meridian-Forwarded", "1")],
        r#"{"SetWeight": {"pool": "web", "endpoint": "a", "weight": 9}}"#,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    unchanged("a node's raw write");

    // a matching If-Match applies
    let r = request(
        api,
        "PATCH",
        "/v1/pools/web/endpoints/a",
        Some(w),
        &[JSON, ("If-Match", &tag)],
        r#"{"weight": 7}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // auth: no token, a bad one, and each scope on each route class
    let r = request(api, "GET", "/v1/pools", None, &[], "");
    assert_eq!((r.status, r.error().0), (401, "unauthorized".into()));
    let r = request(api, "GET", "/v1/pools", Some("mrd_nope_nope"), &[], "");
    assert_eq!((r.status, r.error().0), (401, "unauthorized".into()));
    let patch = r#"{"weight": 8}"#;
    let classes: [(&str, &str, &str); 3] = [
        ("GET", "/v1/pools", ""),
        ("PATCH", "/v1/pools/web/endpoints/b", patch),
        ("GET", "/v1/tokens", ""),
    ];
    for (who, tok, want) in [
        ("read", read.as_str(), [200, 403, 403]),
        ("write", w, [200, 200, 403]),
        ("admin", admin.as_str(), [200, 200, 200]),
        ("probe", probe.as_str(), [403, 403, 403]),
    ] {
        for ((method, path, body), want) in classes.iter().zip(want) {
            let r = request(api, method, path, Some(tok), &[JSON], body);
            assert_eq!(r.status, want, "{who} {method} {path}: {}", r.body);
            if want == 403 {
                assert_eq!(r.error().0, "forbidden");
            }
        }
    }

    // a token made through the API works on every node; revoked, it is
    // refused on every node within a second
    let made = send(
        api,
        &admin,
        "POST",
        "/v1/tokens",
        &json!({"scope": "read", "description": "e2e"}),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let new = made.json()["token"]
        .as_str()
        .expect("the token")
        .to_string();
    let id = made.json()["id"].as_str().expect("an id").to_string();
    for n in 1..=3 {
        let deadline = Instant::now() + BOUND;
        while get(&c.node(n).api, &new, "/v1/pools").status != 200 {
            assert!(Instant::now() < deadline, "node {n} never took the token");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let listed = get(api, &admin, "/v1/tokens").json();
    assert!(
        !listed.to_string().contains(&new),
        "the token is never listed"
    );
    let r = request(
        api,
        "DELETE",
        &format!("/v1/tokens/{id}"),
        Some(&admin),
        &[],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let revoked = Instant::now();
    for n in 1..=3 {
        loop {
            let r = get(&c.node(n).api, &new, "/v1/pools");
            if r.status == 401 {
                break;
            }
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "node {n} still takes a revoked token: {}",
                r.status
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    // 503 without quorum, with Retry-After; the version does not move
    let mut c = c;
    let survivor = 1;
    let before = version(api, w);
    c.kill(2);
    c.kill(3);
    let deadline = Instant::now() + BOUND;
    let r = loop {
        let r = send(
            api,
            w,
            "PATCH",
            "/v1/pools/web/endpoints/b",
            &json!({"weight": 3}),
        );
        if r.status == 503 || Instant::now() > deadline {
            break r;
        }
    };
    assert_eq!(
        (r.status, r.error().0),
        (503, "unavailable".into()),
        "{}",
        r.body
    );
    assert!(r.header("retry-after").is_some(), "Retry-After");
    assert_eq!(version(&c.node(survivor).api, w), before);
    let soa = dig(c.node(survivor).dns(), &["glb.example.com", "SOA"]);
    assert_eq!(soa.status, "NOERROR", "DNS still answers");
}
