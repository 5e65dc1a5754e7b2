//! The node's GeoIP databases: loaded at start, read into memory and verified,
//! swapped in whole on SIGHUP or when a file is replaced. A database that
//! fails to load is an error at start; on reload it is logged and the last
//! good databases keep serving.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use meridian_config::node::GeoIpConfig;
use meridian_dns::handler::GeoHandle;
use meridian_dns::SnapshotHandle;
use meridian_steering::geo::build::{asn_database, city_database, demo_asns, demo_places};
use meridian_steering::geo::DbBytes;
use meridian_steering::GeoIp;
use tracing::{error, info};

/// How often database files are checked for replacement.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// Where the databases come from.
#[derive(Debug, Clone)]
pub enum GeoSource {
    None,
    Files {
        city: PathBuf,
        asn: Option<PathBuf>,
    },
    /// The generated demo databases of `meridian dev`.
    Demo,
}

impl GeoSource {
    pub fn from_config(c: &GeoIpConfig) -> GeoSource {
        match &c.city {
            Some(city) => GeoSource::Files {
                city: city.clone(),
                asn: c.asn.clone(),
            },
            None => GeoSource::None,
        }
    }

    /// Loads and verifies the databases.
    pub fn load(&self) -> Result<Option<GeoIp>, String> {
        match self {
            GeoSource::None => Ok(None),
            GeoSource::Demo => {
                let city = city_database(&demo_places()).map_err(|e| e.to_string())?;
                let asn = asn_database(&demo_asns()).map_err(|e| e.to_string())?;
                GeoIp::new(DbBytes::Owned(city), Some(DbBytes::Owned(asn)))
                    .map(Some)
                    .map_err(|e| e.to_string())
            }
            GeoSource::Files { city, asn } => {
                let city_bytes = read(city)?;
                let asn_bytes = asn.as_deref().map(read).transpose()?;
                GeoIp::new(city_bytes, asn_bytes)
                    .map(Some)
                    .map_err(|e| format!("{}: {e}", describe_paths(city, asn.as_deref())))
            }
        }
    }

    /// What identifies the files' current contents: size and modification
    /// time, so a replaced file is noticed.
    fn stamp(&self) -> Vec<FileStamp> {
        match self {
            GeoSource::Files { city, asn } => {
                files_stamp(std::iter::once(city.as_path()).chain(asn.as_deref()))
            }
            _ => Vec::new(),
        }
    }
}

fn describe_paths(city: &Path, asn: Option<&Path>) -> String {
    match asn {
        Some(a) => format!("{} / {}", city.display(), a.display()),
        None => city.display().to_string(),
    }
}

/// `meridian demo-geoip DIR`: writes the demo databases as files.
pub fn write_demo(dir: &Path) -> std::process::ExitCode {
    let write = |name: &str,
                 bytes: Result<Vec<u8>, meridian_steering::geo::build::BuildError>|
     -> Result<(), String> {
        let bytes = bytes.map_err(|e| e.to_string())?;
        let path = dir.join(name);
        std::fs::write(&path, bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
        Ok(())
    };
    let result = std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
        .and_then(|()| write("city.mmdb", city_database(&demo_places())))
        .and_then(|()| write("asn.mmdb", asn_database(&demo_asns())));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meridian: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Reads a database file into memory. Not a memory map: a file
/// truncated in place (`cp` over it does that) would crash the process with
/// SIGBUS on the next lookup; a copy in memory cannot change under a query.
fn read(path: &Path) -> Result<DbBytes, String> {
    std::fs::read(path)
        .map(DbBytes::Owned)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Loads the databases again and publishes them; on failure logs and keeps
/// the current ones.
pub fn reload(source: &GeoSource, handle: &GeoHandle, snapshots: &SnapshotHandle) {
    if matches!(source, GeoSource::None) {
        return;
    }
    match source.load() {
        Ok(geo) => {
            if let Some(g) = &geo {
                info!(database = %g.describe(), "GeoIP databases loaded");
            }
            handle.store(geo.map(std::sync::Arc::new));
            // the classified policies' client trees, from the new databases
            snapshots.geo_changed();
        }
        Err(e) => error!("GeoIP reload rejected, keeping the previous databases: {e}"),
    }
}

/// Reloads whenever a database file changes.
pub async fn watch(source: GeoSource, handle: GeoHandle, snapshots: SnapshotHandle) {
    if !matches!(source, GeoSource::Files { .. }) {
        return;
    }
    watch_changes(|| source.stamp(), || reload(&source, &handle, &snapshots)).await;
}

/// What identifies a file's contents as far as a watcher can tell: its
/// size and modification time (`None`: it cannot be read).
pub type FileStamp = Option<(u64, SystemTime)>;

/// The stamps of `paths`, in order.
pub fn files_stamp<'p>(paths: impl IntoIterator<Item = &'p Path>) -> Vec<FileStamp> {
    paths
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.len(), m.modified().ok()?))
        })
        .collect()
}

/// Calls `changed` whenever `stamp` differs from the last time, looking
/// every [`WATCH_INTERVAL`]: files replaced in place or renamed over are
/// noticed without any notification API.
pub async fn watch_changes(stamp: impl Fn() -> Vec<FileStamp>, changed: impl Fn()) {
    let mut last = stamp();
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = stamp();
        if now != last {
            last = now;
            changed();
        }
    }
}
