//! DNS behaviour that must be right (DESIGN.md), checked with dig.

use crate::harness::{query_bytes, rcode, tcp_exchange, udp_exchange, Server};

/// A zone with one of everything, a delegation, a 100-address name, and a
/// second zone whose SOA TTL is below its minimum.
pub fn zones() -> String {
    let big: Vec<String> = (0..100)
        .map(|i| format!("10.0.{}.{}", i / 250, i % 250 + 1))
        .collect();
    let mid: Vec<String> = (0..40).map(|i| format!("10.1.0.{}", i + 1)).collect();
    format!(
        r#"zones:
  glb.example.com:
    ttl: 300
    soa: {{rname: hostmaster.example.com., minimum: 60, ttl: 3600}}
    ns:
      - {{name: ns1, addresses: [192.0.2.53, "2001:db8::53"]}}
      - {{name: ns2.example.net.}}
    records:
      - {{name: www, type: A, values: [192.0.2.10, 192.0.2.11]}}
      - {{name: www, type: AAAA, value: "2001:db8::10"}}
      - {{name: alias, type: CNAME, value: www}}
      - {{name: out, type: CNAME, value: target.example.net.}}
      - {{name: dangling, type: CNAME, value: missing}}
      - {{name: "*.wild", type: A, value: 192.0.2.80}}
      - {{name: sub.wild, type: TXT, value: real}}
      - {{name: "*.wc", type: CNAME, value: www}}
      - {{name: loop1, type: CNAME, value: loop2}}
      - {{name: loop2, type: CNAME, value: loop1}}
      - {{name: "@", type: MX, value: "10 mail"}}
      - {{name: mail, type: A, value: 192.0.2.25}}
      - {{name: "@", type: TXT, value: "hello world"}}
      - {{name: "@", type: CAA, value: '0 issue "ca.example.net"'}}
      - {{name: _sip._tcp, type: SRV, value: "10 5 5060 mail"}}
      - {{name: a.b.deep, type: TXT, value: deep}}
      - {{name: sub, type: NS, values: [ns.sub, ns2.example.net.]}}
      - {{name: ns.sub, type: A, value: 192.0.2.60}}
      - {{name: big, type: A, values: [{big}]}}
      - {{name: mid, type: A, values: [{mid}]}}
    steered:
      - {{name: app, type: A, ttl: 20, pool: web, steps: [health, weighted, {{first: 1}}]}}
  second.test:
    soa: {{rname: h.second.test., minimum: 300, ttl: 30}}
    ns: [{{name: ns.example.net.}}]
pools:
  web:
    endpoints:
      - {{id: eu, address: 192.0.2.1, region: eu-west}}
      - {{id: us, address: 198.51.100.1, region: us-east}}
"#,
        big = big.join(", "),
        mid = mid.join(", ")
    )
}

fn authoritative(d: &crate::harness::Dig) {
    assert!(d.has_flag("aa"), "AA not set:\n{}", d.raw);
    assert!(!d.has_flag("ra"), "RA set:\n{}", d.raw);
}

#[test]
fn apex_soa_and_ns_with_glue() {
    let s = Server::start(&zones());
    let soa = s.dig(&["glb.example.com", "SOA"]);
    assert_eq!(soa.status, "NOERROR");
    authoritative(&soa);
    assert_eq!(soa.answer.len(), 1);
    let fields: Vec<&str> = soa.answer[0].data.split_whitespace().collect();
    assert_eq!(fields[0], "ns1.glb.example.com.");
    assert_eq!(fields[1], "hostmaster.example.com.");
    assert_eq!(
        fields[2], "1",
        "the serial is the replicated state's version"
    );
    assert_eq!(&fields[3..], ["3600", "600", "1209600", "60"]);
    assert_eq!(soa.answer[0].ttl, 3600);

    let ns = s.dig(&["glb.example.com", "NS"]);
    authoritative(&ns);
    assert_eq!(
        ns.answers("NS"),
        ["ns1.glb.example.com.", "ns2.example.net."]
    );
    let mut glue: Vec<(String, String)> = ns
        .additional
        .iter()
        .map(|r| (r.rtype.clone(), r.data.clone()))
        .collect();
    glue.sort();
    assert_eq!(
        glue,
        [
            ("A".to_string(), "192.0.2.53".to_string()),
            ("AAAA".to_string(), "2001:db8::53".to_string())
        ],
        "glue for the in-zone name server only"
    );
    // the name server's own address answers too
    assert_eq!(
        s.dig(&["ns1.glb.example.com", "A"]).answers("A"),
        ["192.0.2.53"]
    );
}

#[test]
fn record_types() {
    let s = Server::start(&zones());
    let a = s.dig(&["www.glb.example.com", "A"]);
    authoritative(&a);
    assert_eq!(a.answers("A"), ["192.0.2.10", "192.0.2.11"]);
    assert_eq!(a.answer[0].ttl, 300);
    assert_eq!(
        s.dig(&["www.glb.example.com", "AAAA"]).answers("AAAA"),
        ["2001:db8::10"]
    );

    let mx = s.dig(&["glb.example.com", "MX"]);
    assert_eq!(mx.answers("MX"), ["10 mail.glb.example.com."]);
    assert_eq!(
        mx.additional
            .iter()
            .filter(|r| r.rtype == "A")
            .map(|r| r.data.as_str())
            .collect::<Vec<_>>(),
        ["192.0.2.25"]
    );

    assert_eq!(
        s.dig(&["glb.example.com", "TXT"]).answers("TXT"),
        ["\"hello world\""]
    );
    assert_eq!(
        s.dig(&["glb.example.com", "CAA"]).answers("CAA"),
        ["0 issue \"ca.example.net\""]
    );
    let srv = s.dig(&["_sip._tcp.glb.example.com", "SRV"]);
    assert_eq!(srv.answers("SRV"), ["10 5 5060 mail.glb.example.com."]);
    assert!(srv.additional.iter().any(|r| r.data == "192.0.2.25"));
}

#[test]
fn cname_chains() {
    let s = Server::start(&zones());
    // followed inside the zone
    let d = s.dig(&["alias.glb.example.com", "A"]);
    authoritative(&d);
    assert_eq!(d.answers("CNAME"), ["www.glb.example.com."]);
    assert_eq!(d.answers("A"), ["192.0.2.10", "192.0.2.11"]);
    // asked for the CNAME itself
    let c = s.dig(&["alias.glb.example.com", "CNAME"]);
    assert_eq!(c.answer.len(), 1);
    // leaving the zone: the CNAME alone
    let o = s.dig(&["out.glb.example.com", "A"]);
    assert_eq!(o.status, "NOERROR");
    assert_eq!(o.answers("CNAME"), ["target.example.net."]);
    assert_eq!(o.answer.len(), 1);
    // to a missing in-zone name: NXDOMAIN for the target (RFC 6604), CNAME kept
    let m = s.dig(&["dangling.glb.example.com", "A"]);
    assert_eq!(m.status, "NXDOMAIN");
    assert_eq!(m.answers("CNAME"), ["missing.glb.example.com."]);
    assert_eq!(m.authority[0].rtype, "SOA");
}

#[test]
fn nxdomain_and_nodata_carry_the_soa_with_the_negative_ttl() {
    let s = Server::start(&zones());
    let nx = s.dig(&["nope.glb.example.com", "A"]);
    assert_eq!(nx.status, "NXDOMAIN");
    authoritative(&nx);
    assert!(nx.answer.is_empty());
    assert_eq!(nx.authority.len(), 1);
    assert_eq!(nx.authority[0].rtype, "SOA");
    assert_eq!(nx.authority[0].ttl, 60, "min(SOA TTL 3600, minimum 60)");

    let nodata = s.dig(&["www.glb.example.com", "TXT"]);
    assert_eq!(nodata.status, "NOERROR");
    authoritative(&nodata);
    assert!(nodata.answer.is_empty());
    assert_eq!(nodata.authority[0].rtype, "SOA");
    assert_eq!(nodata.authority[0].ttl, 60);

    // an empty non-terminal exists: NODATA, not NXDOMAIN
    let ent = s.dig(&["deep.glb.example.com", "A"]);
    assert_eq!(ent.status, "NOERROR");
    assert_eq!(ent.authority[0].rtype, "SOA");
    assert_eq!(s.dig(&["b.deep.glb.example.com", "A"]).status, "NOERROR");
    assert_eq!(s.dig(&["x.deep.glb.example.com", "A"]).status, "NXDOMAIN");

    // SOA TTL below minimum: the SOA TTL wins
    let other = s.dig(&["nope.second.test", "A"]);
    assert_eq!(other.status, "NXDOMAIN");
    assert_eq!(other.authority[0].ttl, 30, "min(SOA TTL 30, minimum 300)");
}

#[test]
fn names_outside_every_zone_are_refused() {
    let s = Server::start(&zones());
    for name in [
        "example.org",
        "example.com",
        "glb.example.com.evil.test",
        ".",
    ] {
        let d = s.dig(&[name, "A"]);
        assert_eq!(d.status, "REFUSED", "{name}:\n{}", d.raw);
        assert!(!d.has_flag("aa"));
        assert!(d.answer.is_empty() && d.authority.is_empty());
    }
}

#[test]
fn question_case_is_preserved_and_matching_ignores_case() {
    let s = Server::start(&zones());
    let d = s.dig(&["WwW.GlB.eXaMpLe.CoM", "A"]);
    assert!(
        d.question.starts_with("WwW.GlB.eXaMpLe.CoM."),
        "question: {:?}",
        d.question
    );
    assert_eq!(d.answers("A"), ["192.0.2.10", "192.0.2.11"]);
}

#[test]
fn edns_is_echoed_and_capped() {
    let s = Server::start(&zones());
    let d = s.dig(&["www.glb.example.com", "A", "+bufsize=4096"]);
    let (version, udp, _) = d.edns.clone().expect("OPT in the answer");
    assert_eq!(
        (version, udp),
        (0, 1232),
        "our UDP size, not the requester's"
    );
    assert!(
        s.dig(&["www.glb.example.com", "A", "+noedns"])
            .edns
            .is_none(),
        "no OPT without EDNS"
    );
    let dnssec = s.dig(&["www.glb.example.com", "A", "+dnssec"]);
    assert!(dnssec.edns.expect("OPT").2.contains("do"), "DO bit copied");
    // even error responses keep the OPT
    assert!(s.dig(&["example.org", "A"]).edns.is_some());
    let v1 = s.dig(&["www.glb.example.com", "A", "+edns=1", "+noednsneg"]);
    assert_eq!(v1.status, "BADVERS");
    assert_eq!(v1.edns.expect("OPT").0, 0, "answered with version 0");
    assert!(v1.answer.is_empty());
}

#[test]
fn truncation_keeps_opt_and_tcp_gets_everything() {
    let s = Server::start(&zones());
    for args in [
        vec!["big.glb.example.com", "A", "+ignore"],
        vec!["big.glb.example.com", "A", "+ignore", "+bufsize=4096"],
    ] {
        let d = s.dig(&args);
        assert!(d.has_flag("tc"), "TC expected:\n{}", d.raw);
        assert!(d.answer.is_empty(), "no partial answer");
        assert_eq!(d.edns.as_ref().expect("OPT kept on truncation").1, 1232);
        authoritative(&d);
    }
    let plain = s.dig(&["big.glb.example.com", "A", "+ignore", "+noedns"]);
    assert!(plain.has_flag("tc"));
    assert!(plain.edns.is_none());
    let tcp = s.dig(&["big.glb.example.com", "A", "+tcp"]);
    assert!(!tcp.has_flag("tc"));
    assert_eq!(tcp.answers("A").len(), 100);
    // dig retries over TCP by itself when it sees TC
    assert_eq!(s.dig(&["big.glb.example.com", "A"]).answers("A").len(), 100);
}

#[test]
fn the_requesters_smaller_udp_size_is_honoured() {
    let s = Server::start(&zones());
    // 40 addresses: about 700 bytes, between 512 and 1232
    let fits = s.dig(&["mid.glb.example.com", "A", "+ignore"]);
    assert!(!fits.has_flag("tc"), "fits in 1232:\n{}", fits.raw);
    assert_eq!(fits.answers("A").len(), 40);
    let small = s.dig(&["mid.glb.example.com", "A", "+ignore", "+bufsize=600"]);
    assert!(small.has_flag("tc"), "600 bytes offered:\n{}", small.raw);
    assert!(small.answer.is_empty());
    assert!(small.edns.is_some());
    // below 512 counts as 512 (RFC 6891)
    let tiny = s.dig(&["mid.glb.example.com", "A", "+ignore", "+bufsize=100"]);
    assert!(tiny.has_flag("tc"));
    let noedns = s.dig(&["mid.glb.example.com", "A", "+ignore", "+noedns"]);
    assert!(noedns.has_flag("tc"), "512 without EDNS");
}

#[test]
fn any_gets_a_minimal_answer() {
    let s = Server::start(&zones());
    let d = s.dig(&["glb.example.com", "ANY"]);
    assert_eq!(d.status, "NOERROR");
    authoritative(&d);
    assert_eq!(d.answer.len(), 1);
    assert_eq!(d.answer[0].rtype, "HINFO");
    assert_eq!(d.answer[0].data, "\"RFC8482\" \"\"");
    assert_eq!(s.dig(&["nope.glb.example.com", "ANY"]).status, "NXDOMAIN");
    // at a name with a CNAME, the CNAME (RFC 8482 §4.2)
    let c = s.dig(&["alias.glb.example.com", "ANY"]);
    assert_eq!(c.status, "NOERROR");
    assert_eq!(c.answers("CNAME"), ["www.glb.example.com."]);
    assert_eq!(c.answer.len(), 1, "{}", c.raw);
}

#[test]
fn nsid_names_the_node() {
    // by default, the cluster node id (1 for a node without a cluster)
    let s = Server::start(&zones());
    let d = s.dig(&["www.glb.example.com", "A", "+nsid"]);
    assert!(d.raw.contains("; NSID: 31 (\"1\")"), "{}", d.raw);
    // not without asking
    let plain = s.dig(&["www.glb.example.com", "A"]);
    assert!(!plain.raw.contains("NSID"), "{}", plain.raw);
    // or the configured name, on the hickory path too (MX has additional
    // records, which the own path leaves to it)
    let s = Server::start_with(
        &zones(),
        "  listen: [\"127.0.0.1:0\"]\n  udp_sockets: 1\n  nsid: ns-a.example\n",
    );
    for q in [["www.glb.example.com", "A"], ["glb.example.com", "MX"]] {
        let d = s.dig(&[q[0], q[1], "+nsid"]);
        assert_eq!(d.status, "NOERROR");
        assert!(d.raw.contains("(\"ns-a.example\")"), "{}", d.raw);
    }
}

#[test]
fn a_cname_loop_answers_each_record_once() {
    let s = Server::start(&zones());
    let d = s.dig(&["loop1.glb.example.com", "A"]);
    assert_eq!(d.status, "NOERROR");
    assert_eq!(
        d.answers("CNAME"),
        ["loop1.glb.example.com.", "loop2.glb.example.com."],
        "{}",
        d.raw
    );
    assert_eq!(d.answer.len(), 2);
}

#[test]
fn wildcards_answer_for_missing_names_only() {
    let s = Server::start(&zones());
    for name in ["foo.wild.glb.example.com", "A.b.WILD.glb.example.com"] {
        let d = s.dig(&[name, "A"]);
        assert_eq!(d.status, "NOERROR", "{}", d.raw);
        authoritative(&d);
        assert_eq!(d.answers("A"), ["192.0.2.80"], "{}", d.raw);
        // the owner is the name asked, as asked
        assert_eq!(d.answer[0].name, format!("{name}."), "{}", d.raw);
    }
    // the wildcard has no AAAA: NODATA with the SOA
    let d = s.dig(&["foo.wild.glb.example.com", "AAAA"]);
    assert_eq!(
        (d.status.as_str(), d.answer.len()),
        ("NOERROR", 0),
        "{}",
        d.raw
    );
    assert_eq!(d.authority[0].rtype, "SOA", "{}", d.raw);
    // an existing name is not synthesized over, nor is a name below it
    let d = s.dig(&["sub.wild.glb.example.com", "A"]);
    assert_eq!(
        (d.status.as_str(), d.answer.len()),
        ("NOERROR", 0),
        "{}",
        d.raw
    );
    let d = s.dig(&["x.sub.wild.glb.example.com", "A"]);
    assert_eq!(d.status, "NXDOMAIN", "{}", d.raw);
    // a wildcard CNAME, owned by the name asked (in its case), then followed
    let d = s.dig(&["EDGE.wc.glb.example.com", "A"]);
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert_eq!(d.answer[0].name, "EDGE.wc.glb.example.com.", "{}", d.raw);
    assert_eq!(d.answers("CNAME"), ["www.glb.example.com."], "{}", d.raw);
    assert_eq!(d.answers("A"), ["192.0.2.10", "192.0.2.11"], "{}", d.raw);
}

#[test]
fn a_cname_into_a_nested_zone_ends_at_the_cname() {
    // child.glb.example.com is a zone of its own, not delegated in its
    // parent: the parent's CNAME into it never gets the parent's NXDOMAIN
    let zones = "zones:
  glb.example.com:
    soa: {rname: hostmaster.example.com.}
    ns: [{name: ns.example.net.}]
    records:
      - {name: tochild, type: CNAME, value: www.child}
  child.glb.example.com:
    soa: {rname: hostmaster.example.com.}
    ns: [{name: ns.example.net.}]
    records:
      - {name: www, type: A, value: 198.51.100.1}
";
    let s = Server::start(zones);
    let d = s.dig(&["tochild.glb.example.com", "A"]);
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    authoritative(&d);
    assert_eq!(
        d.answers("CNAME"),
        ["www.child.glb.example.com."],
        "{}",
        d.raw
    );
    assert_eq!(
        d.answer.len(),
        1,
        "the answer ends at the CNAME:\n{}",
        d.raw
    );
    // which the resolver follows into the child zone
    let d = s.dig(&["www.child.glb.example.com", "A"]);
    assert_eq!(d.answers("A"), ["198.51.100.1"], "{}", d.raw);
    authoritative(&d);
}

#[test]
fn zone_transfers_are_refused() {
    let s = Server::start(&zones());
    let axfr =
        tcp_exchange(s.addr, &query_bytes(7, "glb.example.com", 252, 0, 1)).expect("AXFR reply");
    assert_eq!(rcode(&axfr), 5, "AXFR REFUSED");
    let ixfr =
        udp_exchange(s.addr, &query_bytes(8, "glb.example.com", 251, 0, 1)).expect("IXFR reply");
    assert_eq!(rcode(&ixfr), 5, "IXFR REFUSED");
    let d = s.dig(&["glb.example.com", "AXFR"]);
    assert!(d.raw.contains("Transfer failed"), "{}", d.raw);
}

#[test]
fn other_opcodes_get_notimp_and_bad_questions_formerr() {
    let s = Server::start(&zones());
    // opcode 2 (STATUS) and 4 (NOTIFY)
    for opcode in [2u8, 4] {
        let r =
            udp_exchange(s.addr, &query_bytes(9, "glb.example.com", 6, opcode, 1)).expect("reply");
        assert_eq!(rcode(&r), 4, "opcode {opcode}: NOTIMP");
        assert_eq!(&r[..2], &9u16.to_be_bytes(), "same id");
    }
    let none = udp_exchange(s.addr, &query_bytes(10, "glb.example.com", 1, 0, 0)).expect("reply");
    assert_eq!(rcode(&none), 1, "no question: FORMERR");
    let two = udp_exchange(s.addr, &query_bytes(11, "glb.example.com", 1, 0, 2)).expect("reply");
    assert_eq!(rcode(&two), 1, "two questions: FORMERR");
    // header promises a question that is not there
    let mut cut = query_bytes(12, "glb.example.com", 1, 0, 1);
    cut.truncate(16);
    let r = udp_exchange(s.addr, &cut).expect("reply");
    assert_eq!(rcode(&r), 1, "truncated question: FORMERR");
    assert_eq!(
        s.dig(&["glb.example.com", "SOA", "+header-only"]).status,
        "FORMERR"
    );
    // a class other than IN
    let mut chaos = query_bytes(13, "version.bind", 16, 0, 1);
    let n = chaos.len();
    chaos[n - 1] = 3;
    assert_eq!(
        rcode(&udp_exchange(s.addr, &chaos).expect("reply")),
        5,
        "CH class REFUSED"
    );
}

#[test]
fn garbage_never_stops_the_server() {
    let mut s = Server::start(&zones());
    // deterministic junk: short, header-only, and long random-looking packets
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut junk = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for len in [0usize, 1, 3, 11, 12, 13, 40, 300, 512, 1400, 4000] {
        for _ in 0..5 {
            let _ = sock.send_to(&junk(len), s.addr);
        }
    }
    // a reply header with the QR bit: must not be answered (no reflection)
    let mut response = query_bytes(1, "glb.example.com", 1, 0, 1);
    response[2] |= 0x80;
    assert!(
        udp_exchange(s.addr, &response).is_none(),
        "responses are not answered"
    );
    // TCP: garbage after a length prefix, a lying length, and a hang-up mid-message
    use std::io::Write;
    for (len, body) in [(40u16, junk(40)), (500, junk(10)), (3, junk(3))] {
        let mut t = std::net::TcpStream::connect(s.addr).unwrap();
        let _ = t.write_all(&len.to_be_bytes());
        let _ = t.write_all(&body);
    }
    let _ = tcp_exchange(s.addr, &junk(200));
    assert!(s.is_running(), "server died:\n{}", s.logs());
    assert_eq!(s.dig(&["www.glb.example.com", "A"]).answers("A").len(), 2);
    assert_eq!(
        s.dig(&["www.glb.example.com", "A", "+tcp"])
            .answers("A")
            .len(),
        2
    );
}

#[test]
fn delegations_get_referrals() {
    let s = Server::start(&zones());
    let d = s.dig(&["www.sub.glb.example.com", "A"]);
    assert_eq!(d.status, "NOERROR");
    assert!(!d.has_flag("aa"), "a referral is not authoritative");
    assert!(d.answer.is_empty());
    let mut ns: Vec<String> = d
        .authority
        .iter()
        .filter(|r| r.rtype == "NS")
        .map(|r| r.data.clone())
        .collect();
    ns.sort();
    assert_eq!(ns, ["ns.sub.glb.example.com.", "ns2.example.net."]);
    assert_eq!(
        d.additional
            .iter()
            .map(|r| r.data.as_str())
            .collect::<Vec<_>>(),
        ["192.0.2.60"]
    );
    // DS at the cut is the parent's: NODATA, authoritative
    let ds = s.dig(&["sub.glb.example.com", "DS"]);
    authoritative(&ds);
    assert_eq!(ds.authority[0].rtype, "SOA");
}

#[test]
fn steered_answers_carry_the_record_ttl() {
    let s = Server::start(&zones());
    let d = s.dig(&["app.glb.example.com", "A"]);
    authoritative(&d);
    assert_eq!(d.answer.len(), 1);
    assert_eq!(d.answer[0].ttl, 20);
    assert!(["192.0.2.1", "198.51.100.1"].contains(&d.answer[0].data.as_str()));
    let nodata = s.dig(&["app.glb.example.com", "AAAA"]);
    assert_eq!(nodata.status, "NOERROR");
    assert_eq!(nodata.authority[0].rtype, "SOA");
}

#[test]
fn ipv6_loopback_is_served() {
    // only where the machine has ::1
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no ::1 here; skipping");
        return;
    }
    let s = Server::start_with(&zones(), "  listen: [\"[::1]:0\"]\n");
    assert!(s.addr.is_ipv6());
    assert_eq!(s.dig(&["www.glb.example.com", "A"]).answers("A").len(), 2);
    assert_eq!(
        s.dig(&["www.glb.example.com", "A", "+tcp"])
            .answers("A")
            .len(),
        2
    );
}
