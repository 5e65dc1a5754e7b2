//! `meridian dev`: everything on an embedded default — the example zone
//! `glb.example.com` with three regions' endpoints, served on loopback,
//! a generated GeoIP database that places the documentation prefixes on
//! three continents, and an embedded probe agent that checks each region's
//! demo backend every second.

use std::net::SocketAddr;
use std::process::ExitCode;

use meridian_config::node::{
    DnsConfig, GeoIpConfig, LogConfig, LogFormat, ProbeConfig, DEFAULT_MAX_UDP_PAYLOAD,
};
use meridian_config::NodeConfig;

use crate::demo;
use crate::geoip::GeoSource;
use crate::logging;
use crate::serve::{self, ZoneSource};

/// The example zone spec; `{region}` stands for the port of that region's
/// demo backend.
pub const DEV_ZONES: &str = include_str!("dev_zones.yaml");

/// Starts the demo backends on a thread of their own, for the life of the
/// process.
fn start_demo() -> Result<demo::Bound, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        };
        runtime.block_on(async move {
            let _ = tx.send(demo::Demo::start().await.map_err(|e| e.to_string()));
            std::future::pending::<()>().await;
        });
    });
    rx.recv().map_err(|e| e.to_string()).and_then(|r| r)
}

pub fn run(listen: SocketAddr) -> ExitCode {
    // a one-node cluster whose store lasts as long as this process
    let data = match tempfile::Builder::new().prefix("meridian-dev-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("meridian: cannot create a data directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let demo = match start_demo() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("meridian: cannot start the demo backends: {e}");
            return ExitCode::FAILURE;
        }
    };
    let zones = demo
        .backends
        .iter()
        .fold(DEV_ZONES.to_string(), |z, (region, addr)| {
            z.replace(&format!("{{{region}}}"), &addr.port().to_string())
        });
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
        probe: ProbeConfig {
            region: Some("local".into()),
            policy: Default::default(),
        },
    };
    logging::init(&node.log);
    serve::run(
        &node,
        Some(ZoneSource::Embedded(zones.into())),
        None,
        &GeoSource::Demo,
        |addrs| {
            let a = addrs[0];
            let at = format!("@{} -p {}", a.ip(), a.port());
            let ctl = demo.control;
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
             \n\nEach region's endpoints are health-checked every second at a demo backend\
             \n(eu-west {}, us-east {}, ap-south {}). Stop one and\
             \nwatch it leave the answers within about three seconds:\
             \n\n  curl -X POST http://{ctl}/backends/eu-west/stop\
             \n  dig {at} api.glb.example.com A +short  # now us-east: failed over\
             \n  curl -X POST http://{ctl}/backends/eu-west/start\
             \n\nCtrl-C stops.\n",
                demo.backends["eu-west"], demo.backends["us-east"], demo.backends["ap-south"],
            );
        },
    )
}
