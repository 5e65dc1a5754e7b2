//! Where health checks may connect.
//!
//! A zone spec names the addresses probe agents connect to, and anyone who
//! may write a spec could point every agent at a cloud metadata service or
//! some other inside address. An [`AddressPolicy`] says which addresses
//! checks may reach: an operator's `deny` list, plus addresses no check
//! should need (link-local, where metadata services live; multicast;
//! unspecified), unless the operator's `allow` list names them. The leader
//! applies it to the literal addresses of every spec it proposes, and every
//! agent to each address it is about to connect to, after resolving names.

use std::net::IpAddr;

use ipnet::IpNet;

/// Addresses denied unless allowed, and why.
const DENIED_BY_DEFAULT: [(&str, &str); 9] = [
    (
        "169.254.0.0/16",
        "link-local, where cloud metadata services live",
    ),
    ("fe80::/10", "IPv6 link-local"),
    ("fd00:ec2::254/128", "a cloud metadata address"),
    ("100.100.100.200/32", "a cloud metadata address"),
    ("0.0.0.0/8", "not a destination"),
    ("::/128", "not a destination"),
    ("224.0.0.0/4", "multicast"),
    ("ff00::/8", "multicast"),
    ("255.255.255.255/32", "broadcast"),
];

/// The networks checks may and may not reach.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddressPolicy {
    /// Always reachable, even where `deny` or the defaults say no.
    pub allow: Vec<IpNet>,
    /// Never reachable (besides the defaults).
    pub deny: Vec<IpNet>,
}

impl AddressPolicy {
    /// Whether a check may connect to `ip`; if not, why.
    pub fn permits(&self, ip: IpAddr) -> Result<(), String> {
        let ip = ip.to_canonical();
        // an IPv4 address inside an IPv6 one (NAT64, 6to4, compatible)
        // is judged as the IPv4 address it reaches
        if let Some(v4) = embedded_v4(ip) {
            self.permits(IpAddr::V4(v4))?;
        }
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        if let Some(n) = self.deny.iter().find(|n| n.contains(&ip)) {
            return Err(format!(
                "{ip} is in {n}, which this cluster's checks may not reach"
            ));
        }
        for (net, why) in DENIED_BY_DEFAULT {
            let net: IpNet = net.parse().expect("a valid network");
            if net.contains(&ip) {
                return Err(format!(
                    "{ip} is {why} ({net}): checks may not reach it unless probe.allow lists it"
                ));
            }
        }
        Ok(())
    }
}

/// The IPv4 address an IPv6 address carries: NAT64 (64:ff9b::/96), 6to4
/// (2002::/16) and IPv4-compatible (::/96) forms.
fn embedded_v4(ip: IpAddr) -> Option<std::net::Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let bits = u128::from(v6);
    let s = v6.segments();
    if (s[0], s[1], s[2], s[3], s[4], s[5]) == (0x64, 0xff9b, 0, 0, 0, 0)
        || (bits >> 32 == 0 && bits > 0xffff)
    {
        return Some(std::net::Ipv4Addr::from((bits & 0xffff_ffff) as u32));
    }
    (s[0] == 0x2002).then(|| std::net::Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32))
}

/// Whether a host name would be read as an IPv4 address by URL parsers
/// and `inet_aton` (`2130706433`, `0x7f.1`, `0177.0.0.1`): its last label
/// is a number. Such names must be given as the address they mean.
pub fn numeric_host(name: &str) -> bool {
    let last = name.trim_end_matches('.').rsplit('.').next().unwrap_or("");
    let digits = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X"));
    match digits {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// The literal addresses a spec's checks would connect to that `policy`
/// refuses, with their field paths. (Host names are checked by each agent
/// when it resolves them.)
pub fn spec_targets(
    spec: &crate::ZoneSpec,
    policy: &AddressPolicy,
) -> Result<(), crate::zone::rules::Violations> {
    use crate::zone::rules::{Violation, Violations};
    use crate::zone::EndpointAddress;
    let mut found = Vec::new();
    for (name, pool) in &spec.pools {
        if pool.check.is_none() {
            continue;
        }
        for (i, e) in pool.endpoints.iter().enumerate() {
            let (field, host) = match &e.check_address {
                Some(a) => ("check_address", &a.host),
                None => ("address", &e.address),
            };
            if let EndpointAddress::Ip(ip) = host {
                if let Err(message) = policy.permits(*ip) {
                    found.push(Violation {
                        path: format!("pools.{name}.endpoints[{i}].{field}"),
                        message,
                    });
                }
            }
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(Violations(found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_link_local_are_denied_unless_allowed() {
        let p = AddressPolicy::default();
        for bad in [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "fe80::1",
            "fd00:ec2::254",
            "0.0.0.0",
            "224.0.0.1",
        ] {
            assert!(p.permits(bad.parse().unwrap()).is_err(), "{bad}");
        }
        for bad in ["64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "::a9fe:a9fe"] {
            assert!(p.permits(bad.parse().unwrap()).is_err(), "{bad}");
        }
        assert!(
            numeric_host("2130706433.") && numeric_host("0xa9fe.0xa9fe") && numeric_host("10.1")
        );
        assert!(!numeric_host("backend.example.") && !numeric_host("host-1"));
        for good in ["127.0.0.1", "10.1.2.3", "192.0.2.10", "::1", "2001:db8::1"] {
            assert_eq!(p.permits(good.parse().unwrap()), Ok(()), "{good}");
        }
        let p = AddressPolicy {
            allow: vec!["169.254.10.0/24".parse().unwrap()],
            deny: vec!["10.0.0.0/8".parse().unwrap()],
        };
        assert_eq!(p.permits("169.254.10.5".parse().unwrap()), Ok(()));
        assert!(p.permits("169.254.169.254".parse().unwrap()).is_err());
        let e = p.permits("10.9.9.9".parse().unwrap()).unwrap_err();
        assert!(e.contains("10.0.0.0/8"), "{e}");
    }
}
