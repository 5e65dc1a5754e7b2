//! Per-pool tables, compiled once per snapshot so a query only indexes
//! arrays: each endpoint's region index, position as a unit vector, bias
//! factor and sticky-hash seed, and the RTT matrix from probe regions.

use meridian_config::zone::{Endpoint, ProbeRegion};

use crate::{Context, Observed};

/// Tables for one pool, indexed by endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    /// Distinct regions of the pool, in first-seen order.
    pub region_names: Vec<String>,
    /// Endpoint → index into `region_names`.
    pub region: Vec<u16>,
    /// Endpoint position on the unit sphere, when it has coordinates.
    pub unit: Vec<Option<[f64; 3]>>,
    /// Endpoint `nearest` factor: 1 − bias/100.
    pub bias: Vec<f64>,
    /// Endpoint seed for sticky hashing, from its id: stable across nodes
    /// and restarts, independent of pool order.
    pub seed: Vec<u64>,
    /// Probe regions: name and position, when it has coordinates.
    pub probes: Vec<(String, Option<[f64; 3]>)>,
    /// RTT in ms, `rtt[probe][endpoint]`: the endpoint's static `rtt_ms`,
    /// else what probes measured; `None` when neither.
    pub rtt: Vec<Vec<Option<f64>>>,
    /// Endpoint → whether probes have it in service (true when unchecked).
    pub up: Vec<bool>,
    /// Hashes of what client classes read: the region names (`geo`), the
    /// positions and biases (`nearest`), the probe regions (`latency`,
    /// `cost`); worked out once per pool for [`crate::Policy::classifier`].
    pub signature: Signature,
}

/// See [`Table::signature`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Signature {
    pub regions: u64,
    pub places: u64,
    pub probes: u64,
}

/// A hash of `value`'s debug form.
pub(crate) fn hash_of(value: &impl std::fmt::Debug) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{value:?}").hash(&mut h);
    h.finish()
}

impl Table {
    /// `observed` is aligned with `pool`, or empty when nothing is measured.
    pub fn new(pool: &[Endpoint], observed: &[Observed], regions: &[ProbeRegion]) -> Table {
        let mut region_names: Vec<String> = Vec::new();
        let region = pool
            .iter()
            .map(|e| {
                let i = region_names
                    .iter()
                    .position(|r| *r == e.region)
                    .unwrap_or_else(|| {
                        region_names.push(e.region.clone());
                        region_names.len() - 1
                    });
                i as u16
            })
            .collect();
        let mut table = Table {
            region_names,
            region,
            unit: pool
                .iter()
                .map(|e| Some(unit_vector(e.lat?, e.lon?)))
                .collect(),
            bias: pool
                .iter()
                .map(|e| 1.0 - f64::from(e.bias) / 100.0)
                .collect(),
            seed: pool.iter().map(|e| seed(e.id.as_bytes())).collect(),
            probes: regions
                .iter()
                .map(|r| {
                    let at = r.lat.zip(r.lon).map(|(lat, lon)| unit_vector(lat, lon));
                    (r.name.clone(), at)
                })
                .collect(),
            rtt: regions
                .iter()
                .map(|r| {
                    pool.iter()
                        .enumerate()
                        .map(|(i, e)| {
                            e.rtt_ms.get(&r.name).copied().or_else(|| {
                                observed
                                    .get(i)?
                                    .rtt_ms
                                    .iter()
                                    .find(|(n, _)| *n == r.name)
                                    .map(|m| m.1)
                            })
                        })
                        .collect()
                })
                .collect(),
            up: (0..pool.len())
                .map(|i| observed.get(i).is_none_or(|o| o.in_service))
                .collect(),
            signature: Signature::default(),
        };
        table.signature = Signature {
            regions: hash_of(&table.region_names),
            places: hash_of(&(&table.unit, &table.bias)),
            probes: hash_of(&table.probes),
        };
        table
    }

    pub fn region_index(&self, name: &str) -> Option<u16> {
        self.region_names
            .iter()
            .position(|r| r == name)
            .map(|i| i as u16)
    }

    /// The probe region nearest the client, when the client's position and
    /// probe regions are known.
    pub fn nearest_probe(&self, ctx: &Context<'_>) -> Option<usize> {
        let (lat, lon) = ctx.location?.coords?;
        let c = unit_vector(lat, lon);
        self.probes
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i, dot(c, p.1?))))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
    }
}

/// A (lat, lon) in degrees as a point on the unit sphere.
pub(crate) fn unit_vector(lat: f64, lon: f64) -> [f64; 3] {
    let (la, lo) = (lat.to_radians(), lon.to_radians());
    [la.cos() * lo.cos(), la.cos() * lo.sin(), la.sin()]
}

pub(crate) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Great-circle distance in km between two unit vectors.
pub(crate) fn arc_km(a: [f64; 3], b: [f64; 3]) -> f64 {
    6371.0 * dot(a, b).clamp(-1.0, 1.0).acos()
}

/// FNV-1a of the id, finished with [`mix`]: a fixed function, so every
/// node and every version hashes the same way.
pub(crate) fn seed(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// The splitmix64 finaliser: a bijective 64-bit mixer.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
