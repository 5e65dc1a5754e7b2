//! `meridian explain`: prints what [`meridian_dns::explain`] found.

use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;

use meridian_dns::explain::{explain, parse_client, render};
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
    let client = match client
        .map(|c| parse_client(c).map_err(|e| format!("--{e}")))
        .transpose()
    {
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
