//! `meridian dev`: everything on an embedded default — the example zone
//! `glb.example.com` with three regions' endpoints, served on loopback,
//! a generated GeoIP database that places the documentation prefixes on
//! three continents, and an embedded probe agent that checks each region's
//! demo backend every second.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use meridian_config::node::{
    ApiConfig, Bootstrap, ClusterConfig, DnsConfig, GeoIpConfig, HttpConfig, LogConfig, LogFormat,
    ProbeConfig, DEFAULT_MAX_UDP_PAYLOAD,
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

/// Writes the cluster secret and a token file holding one admin token into
/// `dir` (private to this user): the API's credentials for the session.
/// Returns the paths and the token.
fn credentials(dir: &std::path::Path) -> std::io::Result<(PathBuf, PathBuf, String)> {
    use meridian_consensus::auth::{new_secret, new_token, Scope};
    use std::os::unix::fs::OpenOptionsExt;
    let write = |path: &std::path::Path, text: &str| -> std::io::Result<()> {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?
            .write_all(text.as_bytes())
    };
    let secret = dir.join("cluster.secret");
    write(&secret, &format!("{}\n", new_secret()))?;
    let (token, entry) = new_token(Scope::Admin, Default::default());
    let tokens = dir.join("tokens");
    write(&tokens, &format!("{}\n", entry.line()))?;
    Ok((secret, tokens, token))
}

pub fn run(listen: SocketAddr, api: SocketAddr, http: SocketAddr) -> ExitCode {
    if !http.ip().is_loopback() {
        eprintln!("meridian: dev serves HTTP on loopback only (--http 127.0.0.1:PORT), not {http}");
        return ExitCode::from(2);
    }
    if !api.ip().is_loopback() {
        eprintln!(
            "meridian: dev serves its API on loopback only (--api 127.0.0.1:PORT), not {api}"
        );
        return ExitCode::from(2);
    }
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
    let (secret, tokens, token) = match credentials(data.path()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("meridian: cannot write the session's credentials: {e}");
            return ExitCode::FAILURE;
        }
    };
    let node = NodeConfig {
        dns: DnsConfig {
            listen: vec![listen],
            udp_sockets: None,
            max_udp_payload: DEFAULT_MAX_UDP_PAYLOAD,
            tcp_idle_timeout_secs: 10,
            nsid: None,
            // a developer's loop of dig and dnsperf is no attack: no rate
            // limit, no amplification bound (cookies stay on)
            rrl: None,
            cookies: Default::default(),
            amplification_factor: None,
            tcp: Default::default(),
            metrics: true,
        },
        data_dir: data.path().to_path_buf(),
        geoip: GeoIpConfig::default(),
        log: LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        },
        zones: None,
        // a one-node cluster on loopback: the REST API, behind a token
        // made for this session
        cluster: Some(ClusterConfig {
            id: 1,
            listen: api,
            advertise: api.to_string(),
            bootstrap: Bootstrap::Members([(1, api.to_string())].into()),
            tls: None,
            tokens: Some(tokens),
            secret: Some(secret),
            insecure: false,
            heartbeat_ms: 50,
            election_timeout_ms: 150,
            snapshot_every: 5000,
            snapshot_log_mib: 64,
            write_timeout_ms: 5000,
            api: ApiConfig::default(),
        }),
        probe: ProbeConfig {
            region: Some("local".into()),
            policy: Default::default(),
        },
        // the fallback, trusting loopback as a proxy so a curl can play
        // a client anywhere with X-Forwarded-For
        http: Some(HttpConfig {
            listen: vec![http],
            status: 307,
            trusted_proxies: vec![
                "127.0.0.0/8".parse().expect("a network"),
                "::1/128".parse().expect("a network"),
            ],
            forwarded_header: "x-forwarded-for".into(),
            endpoint_header: true,
            retry_after_secs: 5,
            unavailable_page: None,
            tls: None,
            advertise: Vec::new(),
            proxy: Default::default(),
        }),
        metrics: None,
    };
    logging::init(&node.log);
    serve::run(
        &node,
        Some(ZoneSource::Embedded(zones.into())),
        None,
        &GeoSource::Demo,
        |bound| {
            let a = bound.dns[0];
            let api = bound.api.map_or_else(String::new, |a| a.to_string());
            let web = bound
                .http
                .first()
                .map_or_else(String::new, |a| a.to_string());
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
             \n\nThe REST API is on http://{api} with an admin token made for this session:\
             \n\n  export MERIDIAN_SERVER={api} MERIDIAN_TOKEN={token}\
             \n  curl -H \"Authorization: Bearer $MERIDIAN_TOKEN\" http://{api}/v1/pools/web\
             \n  curl -X PATCH -H \"Authorization: Bearer $MERIDIAN_TOKEN\" -H 'Content-Type: application/json' \\\
             \n       -d '{{\"weight\": 80}}' http://{api}/v1/pools/web/endpoints/eu-west-1\
             \n  meridian ctl get endpoints web\
             \n  meridian ctl drain web us-east-1        # out of every answer\
             \n  meridian ctl explain geo.glb.example.com A --client 198.51.100.7\
             \n  meridian ctl audit                      # who changed what\
             \n\nThe HTTP fallback on http://{web} redirects by the client's own address (here\
             \nthrough X-Forwarded-For, as from a trusted proxy on loopback):\
             \n\n  curl -sv -H 'Host: geo.glb.example.com' -H 'X-Forwarded-For: 192.0.2.7' http://{web}/some/path?q=1\
             \n  # < HTTP/1.1 307 Temporary Redirect\
             \n  # < location: https://eu-west.glb.example.net/some/path?q=1\
             \n\nCtrl-C stops.\n",
                demo.backends["eu-west"], demo.backends["us-east"], demo.backends["ap-south"],
            );
        },
    )
}
