//! Meridian's own reading of the query shape that is nearly all traffic:
//! a header, one question, and at most an OPT record (with ECS, COOKIE,
//! NSID, padding or unknown options), read straight from the receive
//! buffer without allocating.
//!
//! [`parse`] says one of four things of a datagram:
//! - [`Parsed::Hot`]: the common shape, read whole;
//! - [`Parsed::Other`]: well-formed as far as read but not the hot shape
//!   (another opcode, QDCOUNT ≠ 1, records in the answer or authority
//!   sections, a compressed question, a record other than OPT in the
//!   additional section such as TSIG): the hickory path answers it;
//! - [`Parsed::FormErr`]: malformed; the reply is FORMERR, with the
//!   question (and an OPT record) when they could be read, as RFC 6891
//!   §7 asks for a broken OPT record;
//! - [`Parsed::Drop`]: no header, or a response: nothing is sent.
//!
//! The malformed cases it knows (and the hickory path let through):
//! - an ECS option whose ADDRESS holds more or fewer octets than its
//!   SOURCE PREFIX-LENGTH needs, or bits set beyond it (RFC 7871 §6);
//! - a SCOPE PREFIX-LENGTH other than 0 in a query, a prefix longer than
//!   the family allows, an unknown family, two ECS options;
//! - a COOKIE option of a length RFC 7873 §5.2 does not allow;
//! - an option or the OPT record running past its end;
//! - bytes after the last record.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The OPT pseudo-record's type.
const OPT: u16 = 41;
/// EDNS option codes.
const NSID: u16 = 3;
const ECS: u16 = 8;
const COOKIE: u16 = 10;

/// Whether a COOKIE option of `len` bytes has a cookie's length: a client
/// cookie of 8, with a server cookie of 8 to 32 more (RFC 7873 §5.2).
pub fn cookie_len_ok(len: usize) -> bool {
    len == 8 || (16..=40).contains(&len)
}

/// A query of the hot shape, borrowed from its datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query<'a> {
    pub id: u16,
    /// The header's second 16 bits (QR, opcode, AA, TC, RD, RA, Z, AD,
    /// CD, RCODE), as sent.
    pub flags: u16,
    /// The question's name in wire form (length-prefixed labels, ending
    /// with the root's zero), in the case it was asked.
    pub qname: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
    /// Where the question ends in the datagram (the reply echoes
    /// `packet[12..question_end]`).
    pub question_end: usize,
    pub edns: Option<Edns<'a>>,
}

/// What the OPT record said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edns<'a> {
    /// The requestor's UDP payload size (values under 512 mean 512).
    pub udp_size: u16,
    /// The upper 8 bits of the extended RCODE (0 in a query).
    pub ext_rcode: u8,
    pub version: u8,
    /// The DO bit.
    pub dnssec_ok: bool,
    pub ecs: Option<ClientSubnet>,
    /// The COOKIE option's bytes: a client cookie (8), or a client and a
    /// server cookie (16 to 40).
    pub cookie: Option<&'a [u8]>,
    /// An NSID option was present.
    pub nsid: bool,
}

/// An EDNS Client Subnet option (RFC 7871).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSubnet {
    /// The address, its bits beyond `source` zero.
    pub addr: IpAddr,
    pub source: u8,
}

/// What a datagram is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    Hot(Query<'a>),
    Other,
    FormErr(FormErr<'a>),
    Drop,
}

/// A malformed query: what the FORMERR reply can echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormErr<'a> {
    pub id: u16,
    pub flags: u16,
    /// The question, as in [`Query`], when it could be read.
    pub question: Option<(&'a [u8], u16, u16)>,
    /// The query had an OPT record (so the reply carries one).
    pub edns: bool,
    /// Its DO bit, copied into the reply's OPT (RFC 3225 §3).
    pub dnssec_ok: bool,
    /// What was wrong, for logs and tests.
    pub why: &'static str,
}

/// Reads `packet` (see the module's documentation).
pub fn parse(packet: &[u8]) -> Parsed<'_> {
    let Some(header) = packet.get(..12) else {
        return Parsed::Drop;
    };
    let word = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    let (id, flags) = (word(0), word(2));
    if flags & 0x8000 != 0 {
        return Parsed::Drop; // a response
    }
    let (qd, an, ns, ar) = (word(4), word(6), word(8), word(10));
    let opcode = (flags >> 11) & 0xF;
    if opcode != 0 || qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return Parsed::Other;
    }
    let bad = |question, edns, dnssec_ok, why| {
        Parsed::FormErr(FormErr {
            id,
            flags,
            question,
            edns,
            dnssec_ok,
            why,
        })
    };
    // the question: labels without compression
    let mut i = 12;
    loop {
        let Some(&len) = packet.get(i) else {
            return bad(None, false, false, "the question's name runs past the end");
        };
        if len & 0xC0 != 0 {
            return Parsed::Other; // compression (or a reserved label type)
        }
        i += 1 + usize::from(len);
        if i - 12 > 255 {
            return bad(
                None,
                false,
                false,
                "the question's name is longer than 255 octets",
            );
        }
        if len == 0 {
            break;
        }
    }
    let qname = &packet[12..i];
    let Some(tail) = packet.get(i..i + 4) else {
        return bad(None, false, false, "the question has no type and class");
    };
    let qtype = u16::from_be_bytes([tail[0], tail[1]]);
    let qclass = u16::from_be_bytes([tail[2], tail[3]]);
    let question_end = i + 4;
    let question = Some((qname, qtype, qclass));
    let edns = if ar == 0 {
        if packet.len() != question_end {
            return bad(question, false, false, "bytes after the last record");
        }
        None
    } else {
        match opt_record(packet, question_end) {
            Ok(Some(edns)) => Some(edns),
            Ok(None) => return Parsed::Other,
            Err((had_opt, why)) => {
                // the DO bit, when the OPT record's fixed part was read
                let dnssec_ok =
                    had_opt && packet.get(question_end + 7).is_some_and(|b| b & 0x80 != 0);
                return bad(question, had_opt, dnssec_ok, why);
            }
        }
    };
    Parsed::Hot(Query {
        id,
        flags,
        qname,
        qtype,
        qclass,
        question_end,
        edns,
    })
}

/// The one additional record at `rr`, the last in `packet`: an OPT owned
/// by the root, read; `None` for any other record (TSIG, SIG(0) ...: the
/// hickory path reads it); `Err` with whether it was an OPT, and what is
/// wrong.
fn opt_record(packet: &[u8], rr: usize) -> Result<Option<Edns<'_>>, (bool, &'static str)> {
    let Some(head) = packet.get(rr..rr + 11) else {
        return Err((false, "the additional record runs past the end"));
    };
    let rtype = u16::from_be_bytes([head[1], head[2]]);
    if head[0] != 0 || rtype != OPT {
        return Ok(None);
    }
    let bad = |why| Err((true, why));
    let rdlen = usize::from(u16::from_be_bytes([head[9], head[10]]));
    let rdata_start = rr + 11;
    let Some(rdata) = packet.get(rdata_start..rdata_start + rdlen) else {
        return bad("the OPT record runs past the end");
    };
    if packet.len() != rdata_start + rdlen {
        return bad("bytes after the last record");
    }
    let mut edns = Edns {
        udp_size: u16::from_be_bytes([head[3], head[4]]),
        ext_rcode: head[5],
        version: head[6],
        dnssec_ok: head[7] & 0x80 != 0,
        ecs: None,
        cookie: None,
        nsid: false,
    };
    let mut o = 0;
    while o < rdata.len() {
        let Some(oh) = rdata.get(o..o + 4) else {
            return bad("an EDNS option's header runs past the OPT record");
        };
        let code = u16::from_be_bytes([oh[0], oh[1]]);
        let len = usize::from(u16::from_be_bytes([oh[2], oh[3]]));
        let Some(data) = rdata.get(o + 4..o + 4 + len) else {
            return bad("an EDNS option runs past the OPT record");
        };
        match code {
            ECS if edns.ecs.is_some() => return bad("two ECS options"),
            ECS => edns.ecs = Some(client_subnet(data).map_err(|why| (true, why))?),
            COOKIE if !cookie_len_ok(len) => {
                return bad("a COOKIE option of a length no cookie has")
            }
            COOKIE => edns.cookie = Some(data),
            NSID => edns.nsid = true,
            _ => {} // padding and options unknown here are ignored
        }
        o += 4 + len;
    }
    Ok(Some(edns))
}

impl FormErr<'_> {
    /// The FORMERR reply into `out`: the header (QR, the opcode and RD as
    /// asked, RCODE 1), the question when it could be read, and an OPT
    /// record offering `udp_size` when the query had one (RFC 6891 §7).
    pub fn reply(&self, udp_size: u16, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.id.to_be_bytes());
        // QR, opcode, RD and CD kept, as in every other reply; AA, TC,
        // RA, Z, AD clear; RCODE 1
        let flags = 0x8000 | (self.flags & 0x7910) | 1;
        out.extend_from_slice(&flags.to_be_bytes());
        let qd = u16::from(self.question.is_some());
        let ar = u16::from(self.edns);
        for count in [qd, 0, 0, ar] {
            out.extend_from_slice(&count.to_be_bytes());
        }
        if let Some((name, qtype, qclass)) = self.question {
            out.extend_from_slice(name);
            out.extend_from_slice(&qtype.to_be_bytes());
            out.extend_from_slice(&qclass.to_be_bytes());
        }
        if self.edns {
            // root owner, OPT, payload size, extended RCODE 0, version 0,
            // no flags, no options
            out.extend_from_slice(&[0, 0, 41]);
            out.extend_from_slice(&udp_size.max(512).to_be_bytes());
            let dnssec_ok = if self.dnssec_ok { 0x80 } else { 0 };
            out.extend_from_slice(&[0, 0, dnssec_ok, 0, 0, 0]);
        }
    }
}

/// An ECS option's data, checked as RFC 7871 §6 asks.
fn client_subnet(data: &[u8]) -> Result<ClientSubnet, &'static str> {
    let Some(head) = data.get(..4) else {
        return Err("an ECS option shorter than its fixed part");
    };
    let family = u16::from_be_bytes([head[0], head[1]]);
    let (source, scope) = (head[2], head[3]);
    let address = &data[4..];
    let max = match family {
        1 => 32,
        2 => 128,
        _ => return Err("an ECS option of an unknown family"),
    };
    if source > max {
        return Err("an ECS source prefix longer than its family's addresses");
    }
    if scope != 0 {
        return Err("an ECS option with a scope prefix in a query");
    }
    if address.len() != usize::from(source).div_ceil(8) {
        return Err("an ECS address of more or fewer octets than its source prefix needs");
    }
    // bits beyond the source prefix must be zero
    if source % 8 != 0 {
        let last = address[address.len() - 1];
        if last & (0xFFu8 >> (source % 8)) != 0 {
            return Err("an ECS address with bits set beyond its source prefix");
        }
    }
    let addr = if family == 1 {
        let mut b = [0u8; 4];
        b[..address.len()].copy_from_slice(address);
        IpAddr::V4(Ipv4Addr::from(b))
    } else {
        let mut b = [0u8; 16];
        b[..address.len()].copy_from_slice(address);
        IpAddr::V6(Ipv6Addr::from(b))
    };
    Ok(ClientSubnet { addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` of type `qtype`, with `opt` (the OPT record's
    /// RDATA) when given.
    fn query(name: &str, qtype: u16, opt: Option<&[u8]>) -> Vec<u8> {
        let mut q = vec![
            0x12,
            0x34,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(opt.is_some()),
        ];
        for label in name.split('.').filter(|l| !l.is_empty()) {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        if let Some(rdata) = opt {
            q.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0x80, 0]);
            q.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            q.extend_from_slice(rdata);
        }
        q
    }

    fn option(code: u16, data: &[u8]) -> Vec<u8> {
        let mut o = code.to_be_bytes().to_vec();
        o.extend_from_slice(&(data.len() as u16).to_be_bytes());
        o.extend_from_slice(data);
        o
    }

    fn ecs(family: u16, source: u8, scope: u8, addr: &[u8]) -> Vec<u8> {
        let mut d = family.to_be_bytes().to_vec();
        d.extend_from_slice(&[source, scope]);
        d.extend_from_slice(addr);
        option(ECS, &d)
    }

    fn why(p: Parsed<'_>) -> &'static str {
        match p {
            Parsed::FormErr(f) => f.why,
            other => panic!("not a FORMERR: {other:?}"),
        }
    }

    #[test]
    fn the_hot_shape_is_read_whole() {
        let q = query("WWW.Example.com", 1, None);
        let Parsed::Hot(h) = parse(&q) else {
            panic!("not hot")
        };
        assert_eq!((h.id, h.flags, h.qtype, h.qclass), (0x1234, 0x0100, 1, 1));
        assert_eq!(h.qname, b"\x03WWW\x07Example\x03com\x00");
        assert_eq!(h.question_end, q.len());
        assert_eq!(h.edns, None);

        let mut opt = ecs(1, 24, 0, &[192, 0, 2]);
        opt.extend(option(COOKIE, &[7; 8]));
        opt.extend(option(NSID, &[]));
        opt.extend(option(12, &[0; 5])); // padding
        opt.extend(option(65001, b"?")); // unknown
        let q = query("www.example.com", 28, Some(&opt));
        let Parsed::Hot(h) = parse(&q) else {
            panic!("not hot")
        };
        let e = h.edns.expect("edns");
        assert_eq!(
            (e.udp_size, e.version, e.dnssec_ok, e.nsid),
            (1232, 0, true, true)
        );
        assert_eq!(
            e.ecs,
            Some(ClientSubnet {
                addr: "192.0.2.0".parse().unwrap(),
                source: 24
            })
        );
        assert_eq!(e.cookie, Some(&[7u8; 8][..]));
        let q = query(
            "x.example",
            1,
            Some(&ecs(2, 56, 0, &[0x20, 1, 0xd, 0xb8, 0, 0, 0x10])),
        );
        let Parsed::Hot(h) = parse(&q) else {
            panic!("not hot")
        };
        assert_eq!(
            h.edns.unwrap().ecs.unwrap().addr,
            "2001:db8:0:1000::".parse::<IpAddr>().unwrap()
        );
        // /0: no address octets
        assert!(matches!(
            parse(&query("x.example", 1, Some(&ecs(1, 0, 0, &[])))),
            Parsed::Hot(_)
        ));
    }

    #[test]
    fn other_shapes_go_to_the_hickory_path() {
        let base = query("www.example.com", 1, None);
        let with = |i: usize, v: u8| {
            let mut q = base.clone();
            q[i] = v;
            q
        };
        assert_eq!(parse(&with(2, 0x29)), Parsed::Other, "opcode 5 (UPDATE)");
        assert_eq!(parse(&with(5, 2)), Parsed::Other, "QDCOUNT 2");
        assert_eq!(parse(&with(5, 0)), Parsed::Other, "QDCOUNT 0");
        assert_eq!(parse(&with(7, 1)), Parsed::Other, "an answer record");
        assert_eq!(parse(&with(9, 1)), Parsed::Other, "an authority record");
        assert_eq!(parse(&with(11, 2)), Parsed::Other, "two additional records");
        // a compressed question
        let mut q = base[..12].to_vec();
        q.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        assert_eq!(parse(&q), Parsed::Other);
        // an additional record that is not an OPT (here: TSIG's type)
        let mut q = query("www.example.com", 1, Some(&[]));
        let at = q.len() - 10;
        q[at] = 0;
        q[at + 1] = 250;
        assert_eq!(parse(&q), Parsed::Other);
    }

    #[test]
    fn no_header_or_a_response_is_dropped() {
        assert_eq!(parse(&[0; 11]), Parsed::Drop);
        let mut q = query("www.example.com", 1, None);
        q[2] |= 0x80;
        assert_eq!(parse(&q), Parsed::Drop);
    }

    #[test]
    fn malformed_queries_are_formerr_with_what_could_be_read() {
        // bytes after the last record, with and without an OPT
        let mut q = query("www.example.com", 1, None);
        q.push(0);
        assert_eq!(why(parse(&q)), "bytes after the last record");
        let mut q = query("www.example.com", 1, Some(&[]));
        q.push(0);
        assert_eq!(why(parse(&q)), "bytes after the last record");
        // the question cut short
        let q = query("www.example.com", 1, None);
        assert_eq!(
            why(parse(&q[..q.len() - 2])),
            "the question has no type and class"
        );
        assert_eq!(
            why(parse(&q[..16])),
            "the question's name runs past the end"
        );
        // a name over 255 octets
        let long = vec!["a".repeat(63); 5].join(".");
        assert_eq!(
            why(parse(&query(&long, 1, None))),
            "the question's name is longer than 255 octets"
        );
        // ECS: octets that do not fit the prefix, bits beyond it, a
        // scope, a family, a prefix too long, twice
        for (opt, want) in [
            (ecs(1, 24, 0, &[192, 0, 2, 1]), "more or fewer octets"),
            (ecs(1, 24, 0, &[192, 0]), "more or fewer octets"),
            (ecs(1, 23, 0, &[192, 0, 3]), "bits set beyond"),
            (ecs(1, 24, 8, &[192, 0, 2]), "scope prefix in a query"),
            (ecs(3, 8, 0, &[1]), "unknown family"),
            (ecs(1, 33, 0, &[1, 2, 3, 4, 5]), "longer than its family"),
            (
                [ecs(1, 8, 0, &[10]), ecs(1, 8, 0, &[10])].concat(),
                "two ECS",
            ),
            (option(ECS, &[0, 1, 8]), "shorter than its fixed part"),
            (option(COOKIE, &[1; 9]), "COOKIE option"),
            (option(COOKIE, &[1; 41]), "COOKIE option"),
            (vec![0, 8, 0, 9, 0, 1], "runs past the OPT record"),
            (vec![0, 8, 0], "header runs past"),
        ] {
            let q = query("www.example.com", 1, Some(&opt));
            let Parsed::FormErr(f) = parse(&q) else {
                panic!("{want}: not FORMERR")
            };
            assert!(f.why.contains(want), "{want}: {}", f.why);
            // the reply can echo the question and carry an OPT
            assert_eq!(
                f.question.map(|q| q.0),
                Some(&b"\x03www\x07example\x03com\x00"[..])
            );
            assert!(f.edns, "{want}");
            assert_eq!(f.id, 0x1234);
        }
        // an OPT whose RDATA length runs past the datagram
        let mut q = query("www.example.com", 1, Some(&[]));
        let at = q.len() - 1;
        q[at] = 4;
        assert_eq!(why(parse(&q)), "the OPT record runs past the end");
    }

    #[test]
    fn formerr_replies_echo_the_question_and_carry_an_opt() {
        let q = query("www.example.com", 1, Some(&ecs(1, 24, 0, &[192, 0, 2, 1])));
        let Parsed::FormErr(f) = parse(&q) else {
            panic!("not FORMERR")
        };
        let mut out = Vec::new();
        f.reply(1232, &mut out);
        let mut want = vec![0x12, 0x34, 0x81, 0x01, 0, 1, 0, 0, 0, 0, 0, 1];
        want.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        // the query's DO bit copied (RFC 3225 §3)
        want.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0x80, 0, 0, 0]);
        assert_eq!(out, want);
        // without a question or an OPT: the header alone
        let q = query("www.example.com", 1, None);
        let Parsed::FormErr(f) = parse(&q[..16]) else {
            panic!("not FORMERR")
        };
        f.reply(1232, &mut out);
        assert_eq!(out, [0x12, 0x34, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn any_bytes_parse_without_panicking() {
        // every truncation and every single-bit flip of a full query
        let mut opt = ecs(1, 22, 0, &[198, 51, 100]);
        opt.extend(option(COOKIE, &[3; 16]));
        let q = query("www.example.com", 1, Some(&opt));
        for n in 0..=q.len() {
            let _ = parse(&q[..n]);
        }
        for bit in 0..q.len() * 8 {
            let mut m = q.clone();
            m[bit / 8] ^= 1 << (bit % 8);
            let _ = parse(&m);
        }
    }
}

/// The own reading against hickory's, on generated queries of the hot
/// shape and mutations of them (the opt-in run raises the case
/// count: `PROPTEST_CASES=1000000 cargo test -p meridian-dns --release
/// differential`).
#[cfg(test)]
mod differential {
    use super::*;
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    use proptest::prelude::*;

    /// An ECS option's parts: IPv6, source prefix, address bytes.
    type EcsParts = (bool, u8, [u8; 16]);
    /// An OPT record's parts: size, DO, ECS, COOKIE bytes.
    type OptParts = (u16, bool, Option<EcsParts>, Option<Vec<u8>>);

    /// A query of the hot shape from its parts.
    fn build(id: u16, labels: &[String], qtype: u16, opt: Option<OptParts>) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(opt.is_some())]);
        for l in labels {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        if let Some((size, dnssec_ok, ecs, cookie)) = opt {
            let mut rdata = Vec::new();
            if let Some((v6, source, bytes)) = ecs {
                let (family, max) = if v6 { (2u16, 128u8) } else { (1, 32) };
                let source = source % (max + 1);
                let n = usize::from(source).div_ceil(8);
                let mut addr = bytes[..n].to_vec();
                if source % 8 != 0 {
                    addr[n - 1] &= !(0xFFu8 >> (source % 8));
                }
                rdata.extend_from_slice(&8u16.to_be_bytes());
                rdata.extend_from_slice(&(4 + n as u16).to_be_bytes());
                rdata.extend_from_slice(&family.to_be_bytes());
                rdata.extend_from_slice(&[source, 0]);
                rdata.extend_from_slice(&addr);
            }
            if let Some(c) = cookie {
                rdata.extend_from_slice(&10u16.to_be_bytes());
                rdata.extend_from_slice(&(c.len() as u16).to_be_bytes());
                rdata.extend_from_slice(&c);
            }
            q.extend_from_slice(&[0, 0, 41]);
            q.extend_from_slice(&size.to_be_bytes());
            q.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0]);
            q.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            q.extend_from_slice(&rdata);
        }
        q
    }

    fn queries() -> impl Strategy<Value = Vec<u8>> {
        let label = "[a-zA-Z0-9_-]{1,20}";
        let ecs = (any::<bool>(), any::<u8>(), any::<[u8; 16]>());
        let cookie = prop_oneof![Just(8usize), 16usize..=40]
            .prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n));
        let opt = (
            any::<u16>(),
            any::<bool>(),
            proptest::option::of(ecs),
            proptest::option::of(cookie),
        );
        (
            any::<u16>(),
            proptest::collection::vec(label, 0..5),
            prop_oneof![
                Just(1u16),
                Just(28),
                Just(5),
                Just(15),
                Just(16),
                Just(255),
                any::<u16>()
            ],
            proptest::option::of(opt),
        )
            .prop_map(|(id, labels, qtype, opt)| build(id, &labels, qtype, opt))
    }

    /// A query as built (half the time), or a mutation of one: bits
    /// flipped, cut short, grown.
    fn inputs() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![queries(), mutations()]
    }

    fn mutations() -> impl Strategy<Value = Vec<u8>> {
        (
            queries(),
            proptest::collection::vec(any::<(usize, u8)>(), 0..4),
            proptest::option::of(any::<usize>()),
            proptest::collection::vec(any::<u8>(), 0..3),
        )
            .prop_map(|(mut q, flips, cut, extra)| {
                for (at, bit) in flips {
                    let n = q.len();
                    q[at % n] ^= 1 << (bit % 8);
                }
                if let Some(c) = cut {
                    q.truncate(c % (q.len() + 1));
                }
                q.extend(extra);
                q
            })
    }

    /// Cases per run: 2000 in the suite, `PROPTEST_CASES` for the long run.
    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000)
    }

    #[test]
    fn the_inputs_are_mostly_of_the_hot_shape() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = inputs();
        let hot = (0..1000)
            .filter(|_| {
                let packet = strategy.new_tree(&mut runner).unwrap().current();
                matches!(parse(&packet), Parsed::Hot(_))
            })
            .count();
        // not a vacuous comparison: a fair share reaches hickory
        assert!(hot > 200, "{hot} of 1000 inputs were of the hot shape");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]

        /// Whatever the own reading takes as the hot shape, hickory reads
        /// the same way: the id, the question as asked, and the EDNS it
        /// steers and answers by. (Where the own reading is stricter, it
        /// says FORMERR for what hickory let through.)
        #[test]
        fn the_hot_shape_reads_as_hickory_reads_it(packet in inputs()) {
            let Parsed::Hot(q) = parse(&packet) else {
                return Ok(());
            };
            let src = "192.0.2.1:5353".parse().unwrap();
            let request = hickory_server::server::Request::from_bytes(
                packet.clone(),
                src,
                hickory_server::net::xfer::Protocol::Udp,
            );
            let request = match request {
                Ok(r) => r,
                Err(e) => return Err(TestCaseError::fail(format!("hickory refused a hot query: {e}"))),
            };
            prop_assert_eq!(request.metadata.id, q.id);
            prop_assert_eq!(request.queries.as_bytes(), &packet[12..q.question_end]);
            let hq = &request.queries.queries()[0];
            prop_assert_eq!(u16::from(hq.query_type()), q.qtype);
            prop_assert_eq!(u16::from(hq.query_class()), q.qclass);
            prop_assert_eq!(request.edns.is_some(), q.edns.is_some());
            if let (Some(he), Some(e)) = (&request.edns, &q.edns) {
                prop_assert_eq!(he.max_payload(), e.udp_size.max(512));
                prop_assert_eq!(he.version(), e.version);
                prop_assert_eq!(he.flags().dnssec_ok, e.dnssec_ok);
                let hs = match he.option(EdnsCode::Subnet) {
                    Some(EdnsOption::Subnet(cs)) => Some((cs.addr(), cs.source_prefix())),
                    _ => None,
                };
                prop_assert_eq!(hs, e.ecs.map(|c| (c.addr, c.source)));
            }
        }
    }
}
