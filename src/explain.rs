//! `meridian explain`: prints what [`meridian_dns::explain`] found.

use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;

use meridian_dns::explain::{explain, Explanation};
use meridian_dns::Snapshot;

use crate::geoip::GeoSource;
use crate::EXIT_CONFIG;

pub fn run(config: &Path, name: &str, rtype: &str, client: Option<&str>, seed: u64) -> ExitCode {
    let node = match meridian_config::load_node(config) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("meridian: invalid node config:\n{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let Some(zones) = &node.zones else {
        eprintln!(
            "meridian: {} names no `zones` file to explain from",
            config.display()
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    let spec = match meridian_config::load_zones(zones) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("meridian: invalid zone spec:\n{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let Ok(rtype) = hickory_proto::rr::RecordType::from_str(&rtype.to_ascii_uppercase()) else {
        eprintln!("meridian: unknown record type {rtype:?}");
        return ExitCode::from(2);
    };
    let client = match client.map(parse_client).transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("meridian: {e}");
            return ExitCode::from(2);
        }
    };
    let geo = match GeoSource::from_config(&node.geoip).load() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("meridian: cannot load the GeoIP databases: {e}");
            return ExitCode::FAILURE;
        }
    };
    let snapshot = match Snapshot::build(&spec, &Default::default(), 1, 1) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("meridian: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match explain(&snapshot, geo.as_ref(), name, rtype, client, seed) {
        Ok(x) => {
            print!("{}", render(&x, geo.is_some()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("meridian: {e}");
            ExitCode::from(2)
        }
    }
}

/// `192.0.2.7` or `192.0.2.0/24`; host bits past the prefix are cleared.
fn parse_client(text: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("--client: expected an address or address/prefix, got {text:?}"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("--client: expected a prefix 0..={max}, got {p:?}"))?,
        None => max,
    };
    let net = ipnet::IpNet::new(ip, prefix).map_err(|e| e.to_string())?;
    Ok((net.network(), prefix))
}

fn render(x: &Explanation, have_geo: bool) -> String {
    let mut s = String::new();
    let client = x.client.map_or("no client".to_string(), |(ip, p)| {
        format!("client {ip}/{p}")
    });
    s.push_str(&format!("{} {} for {client}\n", x.name, x.rtype));
    match (&x.location, have_geo) {
        (Some(l), _) => s.push_str(&format!(
            "location: {l}; GeoIP network /{}\n",
            l.network_prefix
        )),
        (None, false) => s.push_str("location: no GeoIP database configured\n"),
        (None, true) => s.push_str("location: no client given\n"),
    }
    if let Some(st) = &x.steering {
        s.push_str(&format!("candidates: {}\n", st.pool.join(", ")));
        for (i, step) in st.trace.steps.iter().enumerate() {
            let kept = if step.kept.is_empty() {
                "(none)".to_string()
            } else {
                step.kept.join(", ")
            };
            s.push_str(&format!("{:>3}. {:<17} -> {kept}\n", i + 1, step.step));
            for n in &step.notes {
                s.push_str(&format!("{:>24}{n}\n", ""));
            }
        }
    } else {
        s.push_str("not a steered name: static data\n");
    }
    s.push_str(&format!("rcode: {}\n", mnemonic(x.rcode)));
    for a in &x.answers {
        s.push_str(&format!("answer: {a}\n"));
    }
    if x.client.is_some() {
        s.push_str(&format!("ECS scope: /{}\n", x.scope));
    }
    s
}

/// The rcode as dig prints it.
fn mnemonic(rcode: hickory_proto::op::ResponseCode) -> String {
    use hickory_proto::op::ResponseCode as R;
    match rcode {
        R::NoError => "NOERROR".into(),
        R::FormErr => "FORMERR".into(),
        R::ServFail => "SERVFAIL".into(),
        R::NXDomain => "NXDOMAIN".into(),
        R::NotImp => "NOTIMP".into(),
        R::Refused => "REFUSED".into(),
        other => other.to_string(),
    }
}
