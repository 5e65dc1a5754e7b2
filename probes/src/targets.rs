//! What an agent checks: the spec's checks for one region, flattened into
//! one target per endpoint, with a tag that changes whenever the list does.

use meridian_config::zone::{Check, EndpointAddress};
use meridian_config::ZoneSpec;
use serde::{Deserialize, Serialize};

/// One endpoint to check, and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    pub pool: String,
    pub endpoint: String,
    /// Where to connect: an IP address, or a host name to resolve.
    pub host: String,
    pub port: u16,
    pub check: Check,
}

impl Target {
    /// `host:port` as a connection target (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A region's check list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckList {
    /// Changes whenever `targets` does.
    pub etag: u64,
    pub targets: Vec<Target>,
}

/// Every endpoint whose pool's check runs in `region`, in spec order.
pub fn checks_for(spec: &ZoneSpec, region: &str) -> CheckList {
    let mut targets = Vec::new();
    for (name, pool) in &spec.pools {
        let Some(check) = &pool.check else { continue };
        if !check.regions.iter().any(|r| r == region) {
            continue;
        }
        for e in &pool.endpoints {
            let (address, port) = match &e.check_address {
                Some(a) => (&a.host, a.port.unwrap_or(check.port)),
                None => (&e.address, check.port),
            };
            let host = match address {
                EndpointAddress::Ip(ip) => ip.to_string(),
                EndpointAddress::Host(h) => h.as_str().trim_end_matches('.').to_string(),
            };
            targets.push(Target {
                pool: name.clone(),
                endpoint: e.id.clone(),
                host,
                port,
                check: check.clone(),
            });
        }
    }
    CheckList {
        etag: etag(&targets),
        targets,
    }
}

/// FNV-1a over the list's JSON: the same on every node and every run.
fn etag(targets: &[Target]) -> u64 {
    let bytes = serde_json::to_vec(targets).unwrap_or_default();
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_gets_its_checks_at_the_check_address() {
        let spec = meridian_config::zone::parse(
            "s.yaml",
            r#"
regions: {eu: {}, us: {}}
pools:
  web:
    check: {kind: http, port: 8080, regions: [eu]}
    endpoints:
      - {id: a, address: 192.0.2.1, region: eu}
      - {id: b, address: 192.0.2.2, region: eu, check_address: "127.0.0.1:9000"}
      - {id: c, address: "2001:db8::1", region: eu, check_address: "::1"}
  other:
    endpoints: [{id: z, address: 192.0.2.9, region: us}]
"#,
        )
        .expect("valid");
        let eu = checks_for(&spec, "eu");
        let got: Vec<String> = eu.targets.iter().map(Target::authority).collect();
        assert_eq!(got, ["192.0.2.1:8080", "127.0.0.1:9000", "[::1]:8080"]);
        assert!(checks_for(&spec, "us").targets.is_empty());
        assert_eq!(checks_for(&spec, "eu").etag, eu.etag);
        assert_ne!(checks_for(&spec, "us").etag, eu.etag);
    }
}
