//! What keeps the server from being used as a weapon, through the running
//! binary with raw packets: response rate limiting with its slips, DNS
//! cookies (and the exemption they earn), the amplification bound, and
//! the TCP limits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crate::harness::{query_bytes, rcode, udp_exchange, Server};

const ZONES: &str = r#"zones:
  glb.example.com:
    soa: {rname: hostmaster.example.com.}
    ns: [{name: ns.example.net.}]
    records:
      - {name: www, type: A, value: 192.0.2.10}
      - {name: "*.wild", type: A, value: 192.0.2.80}
      - {name: deleg, type: NS, value: ns.deleg}
      - {name: ns.deleg, type: A, value: 192.0.2.60}
      - {name: big, type: A, values: [192.0.2.1, 192.0.2.2, 192.0.2.3, 192.0.2.4, 192.0.2.5, 192.0.2.6, 192.0.2.7, 192.0.2.8, 192.0.2.9, 192.0.2.10, 192.0.2.11, 192.0.2.12, 192.0.2.13, 192.0.2.14, 192.0.2.15, 192.0.2.16, 192.0.2.17, 192.0.2.18, 192.0.2.19, 192.0.2.20]}
"#;

/// `query` with an OPT record (UDP size 1232) carrying a COOKIE option.
pub fn with_cookie(mut query: Vec<u8>, cookie: &[u8]) -> Vec<u8> {
    query[11] = 1;
    query.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    query.extend_from_slice(&(4 + cookie.len() as u16).to_be_bytes());
    query.extend_from_slice(&10u16.to_be_bytes());
    query.extend_from_slice(&(cookie.len() as u16).to_be_bytes());
    query.extend_from_slice(cookie);
    query
}

/// The COOKIE option's data in a reply, if any (the OPT is the last
/// record; its options are searched for code 10).
pub fn cookie_of(reply: &[u8]) -> Option<Vec<u8>> {
    let at = reply.windows(3).rposition(|w| w == [0, 0, 41])?;
    let mut i = at + 11;
    while i + 4 <= reply.len() {
        let code = u16::from_be_bytes([reply[i], reply[i + 1]]);
        let len = usize::from(u16::from_be_bytes([reply[i + 2], reply[i + 3]]));
        if code == 10 {
            return reply.get(i + 4..i + 4 + len).map(<[u8]>::to_vec);
        }
        i += 4 + len;
    }
    None
}

fn answers(reply: &[u8]) -> u16 {
    u16::from_be_bytes([reply[6], reply[7]])
}

fn truncated(reply: &[u8]) -> bool {
    reply[2] & 0x02 != 0
}

/// A server cookie for `client` (asking for `name`) from the server at
/// `addr`, once the cluster has made its secret (the leader does so about
/// a second after start).
pub fn learn_cookie_at(addr: SocketAddr, name: &str, client: &[u8; 8]) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let q = with_cookie(query_bytes(1, name, 1, 0, 1), client);
        if let Some(c) = udp_exchange(addr, &q).as_deref().and_then(cookie_of) {
            assert_eq!(c.len(), 24, "client and server cookie");
            assert_eq!(&c[..8], client, "our client cookie comes back");
            return c;
        }
        assert!(Instant::now() < deadline, "no server cookie within 15 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn learn_cookie(s: &Server, client: &[u8; 8]) -> Vec<u8> {
    learn_cookie_at(s.addr, "www.glb.example.com", client)
}

fn start(dns: &str) -> Server {
    Server::start_with(
        ZONES,
        &format!("  listen: [\"127.0.0.1:0\"]\n  udp_sockets: 1\n{dns}"),
    )
}

#[test]
fn a_cookie_round_trip_and_bad_cookies() {
    let s = start("");
    let client = [0x5a; 8];
    let c = learn_cookie(&s, &client);
    // the server cookie: version 1, reserved zero, a timestamp near now
    assert_eq!(&c[8..12], &[1, 0, 0, 0]);
    // sent back, it is valid: returned as it came (under half an hour old)
    let q = with_cookie(query_bytes(2, "www.glb.example.com", 1, 0, 1), &c);
    let r = udp_exchange(s.addr, &q).expect("reply");
    assert_eq!((rcode(&r), answers(&r)), (0, 1));
    assert_eq!(cookie_of(&r).as_deref(), Some(&c[..]));
    // a forged server cookie is no cookie: answered, with a fresh one
    let mut forged = c.clone();
    forged[20] ^= 0xff;
    let r = udp_exchange(
        s.addr,
        &with_cookie(query_bytes(3, "www.glb.example.com", 1, 0, 1), &forged),
    )
    .expect("reply");
    assert_eq!(rcode(&r), 0);
    let fresh = cookie_of(&r).expect("a server cookie");
    assert_ne!(fresh, forged);
    assert_eq!(&fresh[..8], &client);
    // over TCP too
    let q = with_cookie(query_bytes(4, "www.glb.example.com", 1, 0, 1), &client);
    let r = crate::harness::tcp_exchange(s.addr, &q).expect("reply");
    assert_eq!(cookie_of(&r).map(|c| c.len()), Some(24));
    // a query for a server cookie alone, with no question (RFC 7873 §5.4)
    let mut only = query_bytes(6, "www.glb.example.com", 1, 0, 0);
    only.truncate(12);
    let r = udp_exchange(s.addr, &with_cookie(only, &client)).expect("reply");
    assert_eq!((rcode(&r), answers(&r)), (0, 0), "NOERROR");
    assert_eq!(
        cookie_of(&r).map(|c| c[..8].to_vec()),
        Some(client.to_vec())
    );
    // malformed COOKIE options get FORMERR (RFC 7873 §5.2.2): a client
    // cookie of the wrong length, a server cookie too short or too long
    for len in [7usize, 9, 15, 41] {
        let q = with_cookie(
            query_bytes(5, "www.glb.example.com", 1, 0, 1),
            &vec![1; len],
        );
        let r = udp_exchange(s.addr, &q).expect("reply");
        assert_eq!(rcode(&r), 1, "a COOKIE of {len} bytes: FORMERR");
    }
}

/// Sends `n` copies of `query` from `sock` without waiting, then reads
/// every reply until none comes for half a second: (full answers, slips).
fn flood(sock: &UdpSocket, to: SocketAddr, query: &[u8], n: usize) -> (usize, usize) {
    for _ in 0..n {
        sock.send_to(query, to).expect("send");
    }
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let (mut full, mut slips) = (0, 0);
    let mut buf = [0u8; 4096];
    while let Ok(len) = sock.recv(&mut buf) {
        if truncated(&buf[..len]) {
            assert_eq!(answers(&buf[..len]), 0, "a slip carries no records");
            slips += 1;
        } else {
            full += 1;
        }
    }
    (full, slips)
}

#[test]
fn rrl_drops_and_slips_while_a_cookie_client_passes() {
    let s = start("  rrl: {rate: 5, slip: 2}\n");
    // the cookie client learns its server cookie before the flood
    let client = [0x11; 8];
    let c = learn_cookie(&s, &client);
    std::thread::sleep(Duration::from_millis(1100)); // the bucket refills
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let plain = query_bytes(7, "www.glb.example.com", 1, 0, 1);
    let (full, slips) = flood(&sock, s.addr, &plain, 60);
    // five tokens (and what refills while the flood lasts), then every
    // other limited answer is a slip and the rest are dropped
    assert!((5..=8).contains(&full), "{full} full answers");
    let limited = 60 - full;
    assert!(
        slips + 1 >= limited / 2 && slips <= limited / 2 + 1,
        "{slips} slips of {limited} limited"
    );
    // a slip keeps its question, so a resolver can retry over TCP
    for _ in 0..20 {
        sock.send_to(&plain, s.addr).unwrap();
    }
    let mut buf = [0u8; 4096];
    let r = std::iter::from_fn(|| sock.recv(&mut buf).ok().map(|n| buf[..n].to_vec()))
        .find(|r| truncated(r))
        .expect("a slip among twenty answers");
    assert_eq!(&r[12..plain.len()], &plain[12..]);
    // the same /24, with a valid server cookie: every answer comes
    let cookie_sock = UdpSocket::bind("127.0.0.2:0").unwrap();
    // the cookie was made for 127.0.0.1 (and is valid only from there):
    // this client learns its own
    let c2 = {
        let q = with_cookie(query_bytes(9, "www.glb.example.com", 1, 0, 1), &client);
        cookie_sock.send_to(&q, s.addr).unwrap();
        cookie_sock
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let mut got = None;
        // a limited reply may be dropped; a slip still carries the cookie
        for _ in 0..10 {
            if let Ok(n) = cookie_sock.recv(&mut buf) {
                got = cookie_of(&buf[..n]);
                break;
            }
            cookie_sock.send_to(&q, s.addr).unwrap();
        }
        got.expect("a server cookie for 127.0.0.2, in an answer or a slip")
    };
    assert_ne!(c2[8..], c[8..], "a server cookie is bound to its address");
    let authenticated = with_cookie(query_bytes(10, "www.glb.example.com", 1, 0, 1), &c2);
    let (full, slips) = flood(&cookie_sock, s.addr, &authenticated, 60);
    assert_eq!((full, slips), (60, 0), "a valid cookie is not rate limited");
}

#[test]
fn random_names_under_a_wildcard_or_a_delegation_share_a_bucket() {
    let s = start("  rrl: {rate: 5, slip: 0}\n");
    for (parent, qtype) in [("wild", 1u16), ("deleg", 1), ("www", 0)] {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..60u16 {
            // random names under one node, or random types at one name
            let (name, t) = match qtype {
                0 => ("www.glb.example.com".to_string(), 1000 + i),
                t => (format!("r{i}.{parent}.glb.example.com"), t),
            };
            sock.send_to(&query_bytes(i, &name, t, 0, 1), s.addr)
                .unwrap();
        }
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let answered = std::iter::from_fn(|| sock.recv(&mut buf).ok()).count();
        assert!(answered <= 8, "{parent}: {answered} of 60 answered");
    }
}

#[test]
fn unauthenticated_udp_answers_are_bounded_by_the_query_size() {
    let s = start("  amplification_factor: 3\n");
    let client = [0x22; 8];
    // without a valid cookie: a 300-odd byte answer to a 60-byte query is
    // more than three times its size, so it comes truncated
    let q = with_cookie(query_bytes(1, "big.glb.example.com", 1, 0, 1), &client);
    let r = udp_exchange(s.addr, &q).expect("reply");
    assert!(truncated(&r), "truncated");
    assert!(
        r.len() <= 3 * q.len(),
        "{} bytes for a {}-byte query",
        r.len(),
        q.len()
    );
    // small answers are not touched
    let small = query_bytes(2, "www.glb.example.com", 1, 0, 1);
    let r = udp_exchange(s.addr, &small).expect("reply");
    assert!(!truncated(&r) && answers(&r) == 1);
    // with a valid server cookie, the whole answer
    let c = learn_cookie(&s, &client);
    let q = with_cookie(query_bytes(3, "big.glb.example.com", 1, 0, 1), &c);
    let r = udp_exchange(s.addr, &q).expect("reply");
    assert!(!truncated(&r), "a valid cookie lifts the bound");
    assert_eq!(answers(&r), 20);
}

fn tcp_query(stream: &mut TcpStream, id: u16) -> Option<Vec<u8>> {
    let q = query_bytes(id, "www.glb.example.com", 1, 0, 1);
    stream.write_all(&(q.len() as u16).to_be_bytes()).ok()?;
    stream.write_all(&q).ok()?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).ok()?;
    Some(buf)
}

#[test]
fn two_thousand_idle_tcp_connections_do_not_stop_a_new_client() {
    let s = start("  tcp_idle_timeout_secs: 60\n  tcp: {max_connections: 1024, max_per_client: 32, max_queries: 3}\n");
    // 2 000 idle connections from 100 loopback addresses (20 each, under
    // the per-client cap): more than the server holds
    // every tenth stops part-way through a message: no less evictable
    let mut idle = Vec::new();
    for i in 0..2000u32 {
        let local: SocketAddr = format!("127.0.{}.{}:0", 1 + i / 20 / 250, 1 + (i / 20) % 250)
            .parse()
            .unwrap();
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&local.into()).unwrap();
        sock.connect_timeout(&s.addr.into(), Duration::from_secs(5))
            .expect("connect");
        let mut stream = TcpStream::from(sock);
        if i % 10 == 5 {
            let _ = stream.write_all(&[1, 0, 0]);
        }
        idle.push(stream);
    }
    // a new client is answered: the connection idle the longest made room
    let mut fresh = TcpStream::connect(s.addr).unwrap();
    fresh
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let r = tcp_query(&mut fresh, 1).expect("a new client is answered");
    assert_eq!((rcode(&r), answers(&r)), (0, 1));
    // the oldest were closed first; the newest still answer
    let mut first = &idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(
        first.read(&mut byte).ok(),
        Some(0),
        "the oldest connection was closed"
    );
    let newest = idle.last_mut().unwrap();
    newest
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(
        tcp_query(newest, 2).is_some(),
        "the newest connection is served"
    );
    // the per-connection query limit: three answers, then the close
    assert!(tcp_query(&mut fresh, 3).is_some());
    assert!(tcp_query(&mut fresh, 4).is_some());
    assert!(
        tcp_query(&mut fresh, 5).is_none(),
        "closed after max_queries"
    );
}
