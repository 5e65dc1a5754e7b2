//! `meridian dev`'s demo backends: one small HTTP server per region on
//! loopback, which the embedded probe agent checks, and a control server
//! that stops one (its listener closes, so probes are refused) or starts it
//! again on the same port.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The regions that have a demo backend.
pub const REGIONS: [&str; 3] = ["eu-west", "us-east", "ap-south"];

struct Backend {
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

/// The running backends, by region.
#[derive(Clone)]
pub struct Demo {
    backends: Arc<Mutex<BTreeMap<String, Backend>>>,
}

/// The addresses the demo listens on.
pub struct Bound {
    pub backends: BTreeMap<String, SocketAddr>,
    pub control: SocketAddr,
}

impl Demo {
    /// Binds a backend per region and the control server on free loopback
    /// ports, and serves them on the current runtime.
    pub async fn start() -> std::io::Result<Bound> {
        let demo = Demo {
            backends: Arc::new(Mutex::new(BTreeMap::new())),
        };
        let mut addrs = BTreeMap::new();
        for region in REGIONS {
            let l = TcpListener::bind("127.0.0.1:0").await?;
            let addr = l.local_addr()?;
            addrs.insert(region.to_string(), addr);
            let task = Some(tokio::spawn(serve_backend(l, region)));
            demo.lock()
                .insert(region.to_string(), Backend { addr, task });
        }
        let control = TcpListener::bind("127.0.0.1:0").await?;
        let control_addr = control.local_addr()?;
        let app = Router::new()
            .route("/backends/{region}/stop", post(stop))
            .route("/backends/{region}/start", post(start))
            .with_state(demo);
        tokio::spawn(async move {
            let _ = axum::serve(control, app).await;
        });
        Ok(Bound {
            backends: addrs,
            control: control_addr,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Backend>> {
        self.backends.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn serve_backend(listener: TcpListener, region: &'static str) {
    let app = Router::new().route(
        "/health",
        get(move || async move { format!("ok from {region}\n") }),
    );
    let _ = axum::serve(listener, app).await;
}

async fn stop(State(demo): State<Demo>, Path(region): Path<String>) -> (StatusCode, String) {
    let mut backends = demo.lock();
    let Some(b) = backends.get_mut(&region) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no demo backend in {region}\n"),
        );
    };
    match b.task.take() {
        Some(t) => {
            t.abort();
            (
                StatusCode::OK,
                format!("stopped the {region} backend ({})\n", b.addr),
            )
        }
        None => (
            StatusCode::OK,
            format!("the {region} backend is already stopped\n"),
        ),
    }
}

async fn start(State(demo): State<Demo>, Path(region): Path<String>) -> (StatusCode, String) {
    let Some(name) = REGIONS.iter().copied().find(|r| *r == region) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no demo backend in {region}\n"),
        );
    };
    let addr = {
        let backends = demo.lock();
        match backends.get(name) {
            Some(b) if b.task.is_some() => {
                return (
                    StatusCode::OK,
                    format!("the {region} backend is already running\n"),
                )
            }
            Some(b) => b.addr,
            None => {
                return (
                    StatusCode::NOT_FOUND,
                    format!("no demo backend in {region}\n"),
                )
            }
        }
    };
    match TcpListener::bind(addr).await {
        Ok(l) => {
            if let Some(b) = demo.lock().get_mut(name) {
                b.task = Some(tokio::spawn(serve_backend(l, name)));
            }
            (
                StatusCode::OK,
                format!("started the {region} backend ({addr})\n"),
            )
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot listen on {addr} again: {e}\n"),
        ),
    }
}
