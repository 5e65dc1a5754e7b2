//! Meridian's configuration: the node config (`meridian.yaml`) and the zone
//! spec (`zones.yaml`), parsed from YAML and validated.
//!
//! # Layout
//!
//! - [`node`]: the node config — listeners, data directory, GeoIP, logging.
//! - [`zone`]: the zone spec — zones, static records, pools, steered records.
//! - [`values`]: bounded integers, domain names and other small value types.
//! - `yaml`: positions and error-collecting parsing shared by both.
//!
//! Every problem is reported as a [`Diagnostic`] naming the file, line,
//! column and field path, and all problems of a file are reported together.

#![forbid(unsafe_code)]

use std::fmt;

pub mod node;
pub mod policy;
pub mod values;
mod yaml;
pub mod zone;

pub use node::NodeConfig;
pub use values::DomainName;
pub use zone::ZoneSpec;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Field path such as `pools.web.endpoints[2].weight`; empty for the
    /// document as a whole.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            d.fmt(f)?;
        }
        Ok(())
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(#[from] Diagnostics),
}

/// Reads and validates a node config file.
pub fn load_node(path: &std::path::Path) -> Result<NodeConfig, ConfigError> {
    let text = read(path)?;
    let base = path.parent().unwrap_or(std::path::Path::new("."));
    Ok(NodeConfig::parse(&path.display().to_string(), &text, base)?)
}

/// Reads and validates a zone spec file.
pub fn load_zones(path: &std::path::Path) -> Result<ZoneSpec, ConfigError> {
    let text = read(path)?;
    Ok(zone::parse(&path.display().to_string(), &text)?)
}

/// [`load_zones`], with what `meridian check` warns about in the file.
pub fn load_zones_warned(
    path: &std::path::Path,
) -> Result<(ZoneSpec, Vec<Diagnostic>), ConfigError> {
    let text = read(path)?;
    let file = path.display().to_string();
    let spec = zone::parse(&file, &text)?;
    let warnings = zone::warnings(&file, &text, &spec);
    Ok((spec, warnings))
}

fn read(path: &std::path::Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}
