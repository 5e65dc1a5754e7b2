//! Steering by where the client is, through `dig +subnet`: a generated
//! GeoIP database places the documentation prefixes in Europe (IE, DE),
//! America (US) and Asia (JP, IN).

use crate::harness::{query_bytes, rcode, udp_exchange, with_ecs, Server};
use meridian_steering::geo::build::{asn_database, city_database, demo_asns, demo_places};

fn zones(eu_state: &str) -> String {
    format!(
        r#"regions:
  eu-west: {{lat: 53.3, lon: -6.3}}
  us-east: {{lat: 39.0, lon: -77.5}}
zones:
  glb.example.com:
    soa: {{rname: hostmaster.example.com.}}
    ns: [{{name: ns.example.net.}}]
    records:
      - {{name: togeo, type: CNAME, value: geo}}
    steered:
      - name: geo
        type: A
        pool: web
        steps:
          - health
          - geo: {{continents: {{EU: [eu-west, us-east], NA: [us-east], AS: [ap-south, eu-west]}}, default: [us-east]}}
          - {{first: 1}}
      - name: "*.edge"
        type: A
        pool: web
        steps:
          - health
          - geo: {{continents: {{EU: [eu-west, us-east], NA: [us-east], AS: [ap-south, eu-west]}}, default: [us-east]}}
          - {{first: 1}}
      - {{name: near, type: A, pool: web, steps: [health, nearest, {{first: 1}}]}}
      - {{name: fast, type: A, pool: web, steps: [health, latency, {{first: 1}}]}}
      - {{name: cheap, type: A, pool: web, steps: [health, latency, {{cost: {{margin_ms: 10}}}}, {{first: 1}}]}}
      - {{name: fenced, type: A, pool: web, steps: [health, {{fence: {{ap-south: {{deny: {{countries: [JP]}}}}}}}}, nearest, {{first: 1}}]}}
      - {{name: plain, type: A, pool: web, steps: [health, weighted, {{first: 1}}]}}
      - {{name: sticky, type: A, pool: web, steps: [health, {{weighted: {{sticky: true}}}}, {{first: 1}}]}}
pools:
  web:
    endpoints:
      - {{id: eu-1, address: 192.0.2.10, region: eu-west, lat: 53.35, lon: -6.26, cost: 3, state: {eu_state}, rtt_ms: {{eu-west: 5, us-east: 80}}}}
      - {{id: eu-2, address: 192.0.2.11, region: eu-west, lat: 50.11, lon: 8.68, cost: 1, state: {eu_state}, rtt_ms: {{eu-west: 12, us-east: 90}}}}
      - {{id: us-1, address: 198.51.100.10, region: us-east, lat: 39.04, lon: -77.49, rtt_ms: {{eu-west: 75, us-east: 4}}}}
      - {{id: ap-1, address: 203.0.113.10, region: ap-south, lat: 19.08, lon: 72.88}}
"#
    )
}

/// Starts a server with the demo databases beside its config (relative
/// paths resolve against the config's directory).
fn start(zones_text: &str) -> Server {
    let config = "dns: {listen: [\"127.0.0.1:0\"], udp_sockets: 1}\ngeoip: {city: city.mmdb, asn: asn.mmdb}\nlog: {level: info}\nzones: zones.yaml\n";
    Server::start_files(
        zones_text,
        config,
        &[
            ("city.mmdb", city_database(&demo_places()).unwrap()),
            ("asn.mmdb", asn_database(&demo_asns()).unwrap()),
        ],
    )
}

/// The single answer for `name` from a client in `subnet`, and the ECS dig
/// printed.
fn ask(s: &Server, name: &str, subnet: Option<&str>) -> (String, Option<String>) {
    let sub = subnet.map(|n| format!("+subnet={n}"));
    let mut args = vec![name, "A"];
    if let Some(a) = &sub {
        args.push(a);
    }
    let d = s.dig(&args);
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert_eq!(d.answer.len(), 1, "{}", d.raw);
    (d.answer[0].data.clone(), d.ecs)
}

#[test]
fn each_continent_gets_its_region_with_the_right_scope() {
    let s = start(&zones("enabled"));
    let g = "geo.glb.example.com";
    // Europe: the scope is the widest prefix whose every address is in
    // Europe: 192.0.2.0/24 (two /25 networks, Ireland and Germany; the
    // neighbours are in no continent)
    assert_eq!(
        ask(&s, g, Some("192.0.2.0/24")),
        ("192.0.2.10".into(), Some("192.0.2.0/24/24".into()))
    );
    assert_eq!(
        ask(&s, g, Some("192.0.2.128/25")).1.as_deref(),
        Some("192.0.2.128/25/24"),
        "wider than the /25 GeoIP network: the whole /24 is Europe"
    );
    assert_eq!(
        ask(&s, g, Some("192.0.2.130/32")).1.as_deref(),
        Some("192.0.2.130/32/24"),
        "no wider than the addresses that share the answer"
    );
    // a /16 holding Europe's /24 and others: the scope of its first
    // address's block, longer than the source (RFC 7871 §7.2.1), never
    // the /16
    assert_eq!(
        ask(&s, g, Some("192.0.0.0/16")),
        ("198.51.100.10".into(), Some("192.0.0.0/16/23".into()))
    );
    // America is answered as every client outside Europe and Asia is (the
    // map gives both [us-east]): the scope spans all of them around it,
    // 196.0.0.0/6 (192.0.3.0 to 203.0.112.255 share the answer)
    assert_eq!(
        ask(&s, g, Some("198.51.100.0/24")),
        ("198.51.100.10".into(), Some("198.51.100.0/24/6".into()))
    );
    assert_eq!(
        ask(&s, g, Some("203.0.113.0/24")),
        ("203.0.113.10".into(), Some("203.0.113.0/24/24".into()))
    );
    // IPv6: the /48 of the database, below the /56 source
    assert_eq!(
        ask(&s, g, Some("2001:db8:3::/56")),
        ("203.0.113.10".into(), Some("2001:db8:3::/56/48".into()))
    );
    assert_eq!(ask(&s, g, Some("2001:db8:1:ff00::/56")).0, "192.0.2.10");
}

#[test]
fn a_steered_wildcard_steers_each_name_with_the_scope() {
    let s = start(&zones("enabled"));
    for name in ["cache-1.edge.glb.example.com", "a.b.edge.glb.example.com"] {
        assert_eq!(
            ask(&s, name, Some("192.0.2.0/24")),
            ("192.0.2.10".into(), Some("192.0.2.0/24/24".into()))
        );
        assert_eq!(
            ask(&s, name, Some("203.0.113.0/24")),
            ("203.0.113.10".into(), Some("203.0.113.0/24/24".into()))
        );
        let d = s.dig(&[name, "A", "+subnet=198.51.100.0/24"]);
        assert_eq!(d.answer[0].name, format!("{name}."), "{}", d.raw);
        assert_eq!(d.ecs.as_deref(), Some("198.51.100.0/24/6"), "{}", d.raw);
    }
}

#[test]
fn without_ecs_the_resolver_address_decides() {
    let s = start(&zones("enabled"));
    // 127.0.0.1 is in no continent: the default region, and no ECS echoed
    assert_eq!(
        ask(&s, "geo.glb.example.com", None),
        ("198.51.100.10".into(), None)
    );
    // source prefix 0: no tailoring by the subnet, scope 0
    assert_eq!(
        ask(&s, "geo.glb.example.com", Some("0.0.0.0/0")),
        ("198.51.100.10".into(), Some("0.0.0.0/0/0".into()))
    );
}

#[test]
fn client_independent_answers_have_scope_zero_and_sticky_ones_their_subnet() {
    let s = start(&zones("enabled"));
    assert_eq!(
        ask(&s, "plain.glb.example.com", Some("192.0.2.0/24"))
            .1
            .as_deref(),
        Some("192.0.2.0/24/0")
    );
    let (first, ecs) = ask(&s, "sticky.glb.example.com", Some("198.51.100.0/25"));
    assert_eq!(ecs.as_deref(), Some("198.51.100.0/25/24"));
    for _ in 0..10 {
        assert_eq!(
            ask(&s, "sticky.glb.example.com", Some("198.51.100.0/25")).0,
            first
        );
    }
    // a static name: scope 0
    let d = s.dig(&["glb.example.com", "SOA", "+subnet=192.0.2.0/24"]);
    assert_eq!(d.ecs.as_deref(), Some("192.0.2.0/24/0"));
}

#[test]
fn disabling_europe_moves_it_along_its_fallback_chain() {
    let s = start(&zones("enabled"));
    assert_eq!(
        ask(&s, "geo.glb.example.com", Some("192.0.2.0/24")).0,
        "192.0.2.10"
    );
    std::fs::write(s.zones_path(), zones("disabled")).unwrap();
    let mark = s.log_len();
    s.hangup();
    assert!(s.wait_for_log("zone spec reloaded", mark), "{}", s.logs());
    let (addr, ecs) = ask(&s, "geo.glb.example.com", Some("192.0.2.0/24"));
    assert_eq!(addr, "198.51.100.10", "EU falls back to us-east");
    assert_eq!(ecs.as_deref(), Some("192.0.2.0/24/24"));
    // Asia's chain is unaffected
    assert_eq!(
        ask(&s, "geo.glb.example.com", Some("203.0.113.0/24")).0,
        "203.0.113.10"
    );
}

#[test]
fn nearest_fence_latency_and_cost_change_answers() {
    let s = start(&zones("enabled"));
    // nearest: Mumbai gets ap-south, Frankfurt eu-2, Ashburn us-east
    assert_eq!(
        ask(&s, "near.glb.example.com", Some("203.0.113.128/25")).0,
        "203.0.113.10"
    );
    assert_eq!(
        ask(&s, "near.glb.example.com", Some("192.0.2.128/25")).0,
        "192.0.2.11"
    );
    assert_eq!(
        ask(&s, "near.glb.example.com", Some("198.51.100.0/25")).0,
        "198.51.100.10"
    );
    // fence: Japan may not use ap-south, so its nearest allowed is in Europe
    assert_eq!(
        ask(&s, "near.glb.example.com", Some("203.0.113.0/25")).0,
        "203.0.113.10"
    );
    assert_eq!(
        ask(&s, "fenced.glb.example.com", Some("203.0.113.0/25")).0,
        "192.0.2.11"
    );
    assert_eq!(
        ask(&s, "fenced.glb.example.com", Some("203.0.113.128/25")).0,
        "203.0.113.10"
    );
    // latency from the nearest probe region: eu-1 (5 ms) in Europe, us-1 in America
    assert_eq!(
        ask(&s, "fast.glb.example.com", Some("192.0.2.0/25")).0,
        "192.0.2.10"
    );
    assert_eq!(
        ask(&s, "fast.glb.example.com", Some("198.51.100.0/25")).0,
        "198.51.100.10"
    );
    // cost: eu-2 (12 ms, cost 1) is within 10 ms of eu-1 (5 ms, cost 3)
    assert_eq!(
        ask(&s, "cheap.glb.example.com", Some("192.0.2.0/25")).0,
        "192.0.2.11"
    );
}

#[test]
fn malformed_ecs_gets_formerr() {
    let s = start(&zones("enabled"));
    let q = query_bytes(21, "geo.glb.example.com", 1, 0, 1);
    // a /24 source with bits set in the fourth octet... sent as three octets
    // is clean; a /25 whose last octet has bits past the prefix is not
    let ok = udp_exchange(s.addr, &with_ecs(q.clone(), 1, 24, 0, &[192, 0, 2])).expect("reply");
    assert_eq!(rcode(&ok), 0);
    let dirty =
        udp_exchange(s.addr, &with_ecs(q.clone(), 1, 25, 0, &[192, 0, 2, 0xff])).expect("reply");
    assert_eq!(rcode(&dirty), 1, "bits beyond the source prefix: FORMERR");
    let family = udp_exchange(s.addr, &with_ecs(q.clone(), 9, 24, 0, &[192, 0, 2])).expect("reply");
    assert_eq!(rcode(&family), 1, "unknown family: FORMERR");
    let long =
        udp_exchange(s.addr, &with_ecs(q.clone(), 1, 40, 0, &[192, 0, 2, 1, 1])).expect("reply");
    assert_eq!(rcode(&long), 1, "source prefix beyond 32: FORMERR");
    // more octets than the prefix needs (RFC 7871 §6), or bytes after the
    // last record: FORMERR that echoes the question and carries an OPT
    // (RFC 6891 §7)
    let extra =
        udp_exchange(s.addr, &with_ecs(q.clone(), 1, 24, 0, &[192, 0, 2, 0])).expect("reply");
    let fewer = udp_exchange(s.addr, &with_ecs(q.clone(), 1, 24, 0, &[192, 0])).expect("reply");
    let mut trailing = with_ecs(q.clone(), 1, 24, 0, &[192, 0, 2]);
    trailing.push(0);
    let trailing = udp_exchange(s.addr, &trailing).expect("reply");
    // an OPT record whose RDLENGTH runs past the datagram
    let mut past = with_ecs(q.clone(), 1, 24, 0, &[192, 0, 2]);
    past[q.len() + 10] += 4;
    let past = udp_exchange(s.addr, &past).expect("reply");
    for r in [&extra, &fewer, &trailing, &past] {
        assert_eq!(rcode(r), 1, "FORMERR: {r:?}");
        assert_eq!(&r[..2], &21u16.to_be_bytes(), "same id");
        assert_eq!(&r[4..6], &[0, 1], "the question echoed");
        assert_eq!(&r[10..12], &[0, 1], "an OPT record");
        assert_eq!(&r[12..q.len()], &q[12..], "the question as asked");
        assert_eq!(&r[q.len()..q.len() + 3], &[0, 0, 41], "OPT at the root");
    }
    // shorter than a header, or a response: dropped, nothing sent
    assert_eq!(udp_exchange(s.addr, &q[..11]), None);
    let mut response = q.clone();
    response[2] |= 0x80;
    assert_eq!(udp_exchange(s.addr, &response), None);
    assert_eq!(
        ask(&s, "geo.glb.example.com", Some("192.0.2.0/24")).0,
        "192.0.2.10"
    );
}

#[test]
fn with_ecs_a_static_cname_to_a_steered_name_is_answered_alone() {
    let s = start(&zones("enabled"));
    // without ECS: the chain, followed
    let d = s.dig(&["togeo.glb.example.com", "A"]);
    assert_eq!(d.answers("CNAME"), ["geo.glb.example.com."], "{}", d.raw);
    assert_eq!(d.answers("A").len(), 1, "{}", d.raw);
    // with ECS: the CNAME alone, valid for every client (scope 0); the
    // resolver asks for geo with the subnet (RFC 7871 §7.2.1)
    let e = s.dig(&["togeo.glb.example.com", "A", "+subnet=192.0.2.0/24"]);
    assert_eq!(e.status, "NOERROR");
    assert_eq!(e.answers("CNAME"), ["geo.glb.example.com."], "{}", e.raw);
    assert!(e.answers("A").is_empty(), "{}", e.raw);
    assert_eq!(e.ecs.as_deref(), Some("192.0.2.0/24/0"));
}

#[test]
fn answers_point_at_the_question_and_keep_its_case() {
    let s = start(&zones("enabled"));
    let q = query_bytes(7, "GeO.Glb.Example.COM", 1, 0, 1);
    let r = udp_exchange(s.addr, &with_ecs(q.clone(), 1, 24, 0, &[192, 0, 2])).expect("reply");
    assert_eq!(rcode(&r), 0);
    assert_eq!(&r[6..8], &[0, 1], "one answer");
    assert_eq!(&r[12..q.len()], &q[12..], "the question as asked");
    // the answer's owner is a pointer to the question's name; then A, IN
    let answer = &r[q.len()..];
    assert_eq!(&answer[..6], &[0xC0, 12, 0, 1, 0, 1]);
    assert_eq!(&answer[10..16], &[0, 4, 192, 0, 2, 10]);
}

#[test]
fn a_corrupt_database_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("zones.yaml"), zones("enabled")).unwrap();
    std::fs::write(dir.path().join("city.mmdb"), b"not a database").unwrap();
    std::fs::write(
        dir.path().join("meridian.yaml"),
        "dns: {listen: [\"127.0.0.1:0\"]}\ngeoip: {city: city.mmdb}\nzones: zones.yaml\n",
    )
    .unwrap();
    let (code, out, err) = crate::harness::run(&["serve", "--config", "meridian.yaml"], dir.path());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot load the GeoIP databases") && err.contains("city.mmdb"),
        "{err}"
    );
    assert!(!out.contains("listening"));
}

/// Replaces a file the way geoipupdate does: write aside, rename over.
fn replace(s: &Server, name: &str, bytes: &[u8]) {
    let tmp = s.dir.path().join(format!("{name}.new"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, s.dir.path().join(name)).unwrap();
}

#[test]
fn databases_reload_and_a_bad_one_is_kept_out() {
    let mut s = start(&zones("enabled"));
    let europe = Some("192.0.2.0/24");
    assert_eq!(ask(&s, "geo.glb.example.com", europe).0, "192.0.2.10");

    // a corrupt replacement: rejected, the last good database keeps steering
    replace(&s, "city.mmdb", b"garbage");
    let mark = s.log_len();
    s.hangup();
    assert!(
        s.wait_for_log("GeoIP reload rejected", mark),
        "{}",
        s.logs()
    );
    assert!(s.is_running());
    assert_eq!(ask(&s, "geo.glb.example.com", europe).0, "192.0.2.10");

    // a good replacement that moves 192.0.2.0/24 to America is picked up
    // by the file watcher, no signal needed
    let mut moved = demo_places();
    for p in moved.iter_mut().filter(|p| p.country == "IE") {
        p.country = "US";
        p.continent = "NA";
    }
    let mark = s.log_len();
    replace(&s, "city.mmdb", &city_database(&moved).unwrap());
    assert!(
        s.wait_for_log("GeoIP databases loaded", mark),
        "{}",
        s.logs()
    );
    assert_eq!(
        ask(&s, "geo.glb.example.com", Some("192.0.2.0/25")).0,
        "198.51.100.10"
    );
}

#[test]
fn explain_prints_every_step_with_its_reasons() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("zones.yaml"), zones("enabled")).unwrap();
    std::fs::write(
        dir.path().join("city.mmdb"),
        city_database(&demo_places()).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("asn.mmdb"),
        asn_database(&demo_asns()).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("meridian.yaml"),
        "geoip: {city: city.mmdb, asn: asn.mmdb}\nzones: zones.yaml\n",
    )
    .unwrap();
    let explain = |args: &[&str]| {
        let mut all = vec!["explain", "--config", "meridian.yaml"];
        all.extend_from_slice(args);
        crate::harness::run(&all, dir.path())
    };
    let (code, out, err) = explain(&["fenced.glb.example.com", "A", "--client", "203.0.113.0/25"]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "fenced.glb.example.com. A for client 203.0.113.0/25",
        "location: country JP, continent AS, subdivision 13, at (35.68, 139.69), AS64502; GeoIP network /25",
        "candidates: eu-1, eu-2, us-1, ap-1",
        "2. fence             -> eu-1, eu-2, us-1",
        "dropped ap-1 (client country JP, continent AS, subdivision 13, at (35.68, 139.69), AS64502, 203.0.113.0/25 denied by the fence of ap-south)",
        "3. nearest           -> eu-2, eu-1, us-1",
        "4. first             -> eu-2",
        "rcode: NOERROR",
        "answer: fenced.glb.example.com. 30 IN A 192.0.2.11",
        "ECS scope: /25",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    let (code, out, _) = explain(&["geo.glb.example.com", "--client", "192.0.2.10"]);
    assert_eq!(code, 0);
    assert!(out.contains("continent rule, region eu-west"), "{out}");
    assert!(out.contains("ECS scope: /25"), "{out}");
    let (code, out, _) = explain(&["nope.glb.example.com", "A"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("not a steered name") && out.contains("rcode: NXDOMAIN"),
        "{out}"
    );
    let (code, _, err) = explain(&["geo.glb.example.com", "A", "--client", "192.0.2.0/40"]);
    assert_eq!(code, 2);
    assert!(err.contains("expected a prefix 0..=32"), "{err}");
}

/// The City database truncated in place (as `cp` over it does) while
/// queries flow: no crash, the answers stay right (the database was read
/// into memory), and the broken file is refused on reload.
#[test]
fn a_database_truncated_in_place_while_queries_flow() {
    use std::io::Write;
    let s = start(&zones("enabled"));
    let g = "geo.glb.example.com";
    assert_eq!(ask(&s, g, Some("203.0.113.0/24")).0, "203.0.113.10");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = s.addr;
    let flag = stop.clone();
    // raw ECS queries from Asia, as fast as they come back, bounded
    let querier = std::thread::spawn(move || {
        let (mut ok, mut bad) = (0u32, Vec::new());
        let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut id = 0u16;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) && std::time::Instant::now() < end {
            id = id.wrapping_add(1);
            let q = with_ecs(query_bytes(id, g, 1, 0, 1), 1, 24, 0, &[203, 0, 113]);
            // one retry: a datagram lost on a busy loopback is no failure
            match udp_exchange(addr, &q).or_else(|| udp_exchange(addr, &q)) {
                Some(r) if rcode(&r) == 0 && r.windows(4).any(|w| w == [203, 0, 113, 10]) => {
                    ok += 1
                }
                Some(r) => bad.push(format!("rcode {}", rcode(&r))),
                None => bad.push("no reply".into()),
            }
        }
        (ok, bad)
    });
    let city = s.dir.path().join("city.mmdb");
    let whole = std::fs::read(&city).expect("read");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&city)
        .expect("open in place");
    f.write_all(&whole[..whole.len() / 3]).expect("write");
    drop(f);
    // the watcher looks every 5 s: wait for its verdict on the broken file
    assert!(
        s.wait_for_log("GeoIP reload rejected", 0),
        "the broken file was refused:\n{}",
        s.logs()
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, bad) = querier.join().expect("querier");
    assert!(
        bad.is_empty(),
        "{} of {} queries failed: {bad:?}",
        bad.len(),
        ok as usize + bad.len()
    );
    assert!(ok > 50, "only {ok} answers");
    assert_eq!(ask(&s, g, Some("203.0.113.0/24")).0, "203.0.113.10");
}
