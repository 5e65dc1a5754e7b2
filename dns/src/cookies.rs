//! DNS Cookies (RFC 7873), with server cookies as RFC 9018 makes them
//! interoperable between the servers of one cluster.
//!
//! A server cookie is 16 bytes: version 1, three reserved zero bytes, a
//! 32-bit timestamp (seconds since the Unix epoch), and SipHash-2-4 of the
//! client cookie, those eight bytes and the client's address, keyed with
//! the cluster's secret. Every node holds the same secrets (replicated
//! through Raft and rotated by the leader, see `meridian-consensus`), so a
//! cookie one node gave is valid at every other.
//!
//! A server cookie is valid when its hash matches the current or the
//! previous secret (a rotation does not invalidate the cookies given just
//! before it) and its timestamp is at most an hour old and at most five
//! minutes in the future (RFC 9018 §4.3). A valid cookie less than half
//! an hour old is returned as it came; an older one, an invalid one, or
//! none gets a fresh one. An invalid server cookie is treated as no
//! server cookie (RFC 7873 §5.2.3): answered, but not authenticated.

use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher24;

/// Length of a client cookie.
pub const CLIENT_LEN: usize = 8;
/// Length of an RFC 9018 server cookie.
pub const SERVER_LEN: usize = 16;
/// A COOKIE option's data in a response: client and server cookie.
pub const OPTION_LEN: usize = CLIENT_LEN + SERVER_LEN;

/// A server cookie is valid this long after its timestamp.
const LIFETIME_SECS: u32 = 3600;
/// A cookie older than this is replaced by a fresh one.
const REFRESH_SECS: u32 = 1800;
/// Clock skew allowed between the nodes of a cluster.
const FUTURE_SECS: u32 = 300;

/// The secrets server cookies are made and checked with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Secrets {
    /// New cookies are made with this one; `None` until the cluster has
    /// one: no server cookies are given, and none is valid.
    pub current: Option<[u8; 16]>,
    /// Cookies made before the last rotation are still valid.
    pub previous: Option<[u8; 16]>,
}

/// What a query's COOKIE option proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No COOKIE option.
    Absent,
    /// A client cookie, with no server cookie or one that is not valid:
    /// answered with a fresh server cookie, not authenticated.
    Client,
    /// A valid server cookie: the client has seen our answers at its
    /// address (it is no spoofed source).
    Valid,
}

/// The COOKIE option a response carries: the client cookie and our
/// server cookie.
pub type Reply = [u8; OPTION_LEN];

impl Secrets {
    /// Checks the COOKIE option `option` (8 to 40 bytes, as [`crate::wire`]
    /// accepts) from `client` at `now` (Unix seconds): its verdict and the
    /// option to answer with (none without a secret).
    pub fn check(&self, option: &[u8], client: IpAddr, now: u32) -> (Verdict, Option<Reply>) {
        let Some(current) = self.current else {
            return (Verdict::Client, None);
        };
        let Ok(client_cookie) =
            <[u8; CLIENT_LEN]>::try_from(&option[..CLIENT_LEN.min(option.len())])
        else {
            return (Verdict::Client, None);
        };
        let mut reply = [0u8; OPTION_LEN];
        reply[..CLIENT_LEN].copy_from_slice(&client_cookie);
        if let Some(server) = option.get(CLIENT_LEN..).filter(|s| s.len() == SERVER_LEN) {
            let stamp = u32::from_be_bytes([server[4], server[5], server[6], server[7]]);
            let age = now.wrapping_sub(stamp);
            let fresh =
                server[0] == 1 && (age <= LIFETIME_SECS || stamp.wrapping_sub(now) <= FUTURE_SECS);
            let matches = |secret: &[u8; 16]| {
                hash(secret, &client_cookie, &server[..8], client) == server[8..]
            };
            if fresh && (matches(&current) || self.previous.as_ref().is_some_and(matches)) {
                if age <= REFRESH_SECS || stamp.wrapping_sub(now) <= FUTURE_SECS {
                    reply[CLIENT_LEN..].copy_from_slice(server);
                } else {
                    reply[CLIENT_LEN..].copy_from_slice(&make(
                        &current,
                        &client_cookie,
                        client,
                        now,
                    ));
                }
                return (Verdict::Valid, Some(reply));
            }
        }
        reply[CLIENT_LEN..].copy_from_slice(&make(&current, &client_cookie, client, now));
        (Verdict::Client, Some(reply))
    }
}

/// A fresh server cookie for `client_cookie` from `client` at `now`.
pub fn make(
    secret: &[u8; 16],
    client_cookie: &[u8; CLIENT_LEN],
    client: IpAddr,
    now: u32,
) -> [u8; SERVER_LEN] {
    let mut out = [0u8; SERVER_LEN];
    out[0] = 1;
    out[4..8].copy_from_slice(&now.to_be_bytes());
    let head: [u8; 8] = out[..8].try_into().expect("8 bytes");
    let h = hash(secret, client_cookie, &head, client);
    out[8..].copy_from_slice(&h);
    out
}

/// SipHash-2-4 of client cookie | version | reserved | timestamp | client
/// address (RFC 9018 §4.4).
fn hash(
    secret: &[u8; 16],
    client_cookie: &[u8; CLIENT_LEN],
    head: &[u8],
    client: IpAddr,
) -> [u8; 8] {
    let mut h = SipHasher24::new_with_key(secret);
    h.write(client_cookie);
    h.write(head);
    match client {
        IpAddr::V4(a) => h.write(&a.octets()),
        IpAddr::V6(a) => h.write(&a.octets()),
    }
    h.finish().to_le_bytes()
}

/// Seconds since the Unix epoch, as a cookie's timestamp (wrapping in
/// 2106, as RFC 9018's serial arithmetic allows).
pub fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 9018 Appendix A: the published vectors.
    #[test]
    fn the_rfc_9018_vectors() {
        let secret: [u8; 16] = hex("e5e973e5a6b2a43f48e7dc849e37bfcf").try_into().unwrap();
        let made = |secret: &[u8; 16], client: &str, addr: &str, at| {
            let client: [u8; 8] = hex(client).try_into().unwrap();
            make(secret, &client, addr.parse().unwrap(), at).to_vec()
        };
        // A.1, a client learning a server cookie; A.2, the same renewed
        let a1 = made(&secret, "2464c4abcf10c957", "198.51.100.100", 1_559_731_985);
        assert_eq!(a1, hex("010000005cf79f111f8130c3eee29480"));
        let a2 = made(&secret, "2464c4abcf10c957", "198.51.100.100", 1_559_734_385);
        assert_eq!(a2, hex("010000005cf7a871d4a564a1442aca77"));
        // A.3, another client
        let a3 = made(&secret, "fc93fc62807ddb86", "203.0.113.203", 1_559_734_700);
        assert_eq!(a3, hex("010000005cf7a9acf73a7810aca2381e"));
        // A.4, an IPv6 client after the secret rolled over
        let new: [u8; 16] = hex("445536bcd2513298075a5d379663c962").try_into().unwrap();
        let a4 = made(
            &new,
            "22681ab97d52c298",
            "2001:db8:220:1:59de:d0f4:8769:82b8",
            1_559_741_961,
        );
        assert_eq!(a4, hex("010000005cf7c609a6bb79d16625507a"));

        // as a server checks them: A.2 renews A.1's cookie after 40
        // minutes, valid and older than half an hour
        let s = Secrets {
            current: Some(secret),
            previous: None,
        };
        let addr = "198.51.100.100".parse().unwrap();
        let query = hex("2464c4abcf10c957010000005cf79f111f8130c3eee29480");
        let (v, reply) = s.check(&query, addr, 1_559_734_385);
        assert_eq!(v, Verdict::Valid);
        assert_eq!(
            reply.unwrap().to_vec(),
            hex("2464c4abcf10c957010000005cf7a871d4a564a1442aca77")
        );
        // A.3's cookie has its reserved bytes set by another server: valid,
        // the hash taken over the bytes received (RFC 9018 §4.2)
        let query = hex("fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5");
        let addr = "203.0.113.203".parse().unwrap();
        assert_eq!(s.check(&query, addr, 1_559_727_985 + 600).0, Verdict::Valid);
    }

    #[test]
    fn a_round_trip_and_what_is_not_valid() {
        let s = Secrets {
            current: Some([7; 16]),
            previous: Some([6; 16]),
        };
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        let now = 1_800_000_000;
        // a client cookie alone gets a server cookie
        let (v, reply) = s.check(&[1; 8], addr, now);
        assert_eq!(v, Verdict::Client);
        let reply = reply.unwrap();
        assert_eq!(&reply[..8], &[1; 8]);
        // which is valid from the same address, and returned as it came
        assert_eq!(
            s.check(&reply, addr, now + 10),
            (Verdict::Valid, Some(reply))
        );
        // not from another address, nor with another client cookie
        assert_eq!(
            s.check(&reply, "192.0.2.2".parse().unwrap(), now).0,
            Verdict::Client
        );
        let mut other = reply;
        other[0] ^= 1;
        assert_eq!(s.check(&other, addr, now).0, Verdict::Client);
        // expired after an hour; renewed after half an hour
        assert_eq!(s.check(&reply, addr, now + 3601).0, Verdict::Client);
        let (v, renewed) = s.check(&reply, addr, now + 1801);
        assert_eq!(v, Verdict::Valid);
        assert_ne!(renewed.unwrap(), reply);
        // from the future (beyond the skew allowed)
        let future = make(&[7; 16], &[1; 8], addr, now + 301);
        let mut opt = [1u8; 24];
        opt[8..].copy_from_slice(&future);
        assert_eq!(s.check(&opt, addr, now).0, Verdict::Client);
        // a cookie of the previous secret is valid; one of an older is not
        let old = make(&[6; 16], &[1; 8], addr, now);
        opt[8..].copy_from_slice(&old);
        assert_eq!(s.check(&opt, addr, now).0, Verdict::Valid);
        let older = make(&[5; 16], &[1; 8], addr, now);
        opt[8..].copy_from_slice(&older);
        assert_eq!(s.check(&opt, addr, now).0, Verdict::Client);
        // a server cookie of another length (RFC 7873 allows 8 to 32) is
        // not ours: a fresh one
        assert_eq!(s.check(&[1; 16], addr, now).0, Verdict::Client);
        // no secret yet: nothing to give
        assert_eq!(
            Secrets::default().check(&[1; 8], addr, now),
            (Verdict::Client, None)
        );
    }
}
