//! `meridian dev`: everything on an embedded default — the example zone
//! `glb.example.com` with three regions' endpoints, served on loopback,
//! and a generated GeoIP database that places the documentation prefixes
//! on three continents.

use std::net::SocketAddr;
use std::process::ExitCode;

use meridian_config::node::{
    DnsConfig, GeoIpConfig, LogConfig, LogFormat, DEFAULT_MAX_UDP_PAYLOAD,
};
use meridian_config::NodeConfig;

use crate::geoip::GeoSource;
use crate::logging;
use crate::serve::{self, ZoneSource};

/// The example zone spec.
pub const DEV_ZONES: &str = include_str!("dev_zones.yaml");

pub fn run(listen: SocketAddr) -> ExitCode {
    // a one-node cluster whose store lasts as long as this process
    let data = match tempfile::Builder::new().prefix("meridian-dev-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("meridian: cannot create a data directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let node = NodeConfig {
        dns: DnsConfig {
            listen: vec![listen],
            udp_sockets: None,
            max_udp_payload: DEFAULT_MAX_UDP_PAYLOAD,
            tcp_idle_timeout_secs: 10,
        },
        data_dir: data.path().to_path_buf(),
        geoip: GeoIpConfig::default(),
        log: LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        },
        zones: None,
        cluster: None,
        probe: Default::default(),
    };
    logging::init(&node.log);
    serve::run(
        &node,
        Some(ZoneSource::Embedded(DEV_ZONES.into())),
        None,
        &GeoSource::Demo,
        |addrs| {
            let a = addrs[0];
            let at = format!("@{} -p {}", a.ip(), a.port());
            println!(
                "\nMeridian dev: serving glb.example.com on {a}. Try:\n\
             \n  dig {at} www.glb.example.com A        # steered by weight across three regions\
             \n  dig {at} multi.glb.example.com A      # two answers, drawn by weight\
             \n  dig {at} api.glb.example.com A        # priority failover: eu-west first\
             \n  dig {at} geo.glb.example.com A +subnet=192.0.2.0/24     # Europe  -> eu-west\
             \n  dig {at} geo.glb.example.com A +subnet=198.51.100.0/24  # America -> us-east\
             \n  dig {at} geo.glb.example.com A +subnet=203.0.113.0/24   # Asia    -> ap-south\
             \n  dig {at} www.glb.example.com AAAA\
             \n  dig {at} glb.example.com SOA\
             \n  dig {at} glb.example.com NS           # with glue\
             \n  dig {at} docs.glb.example.com A       # CNAME to a steered name\
             \n  dig {at} nope.glb.example.com A       # NXDOMAIN with the SOA\
             \n  dig {at} example.org A                # REFUSED: not our zone\
             \n\nCtrl-C stops.\n"
            );
        },
    )
}
