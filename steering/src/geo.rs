//! Where a client is: the facts steps may use about a client address, and
//! the MaxMind DB lookup that provides them.
//!
//! [`GeoIp`] reads a GeoIP2/GeoLite2 City database and, optionally, an ASN
//! database from bytes the caller read into memory: this module opens no
//! file. (A memory map is not offered: a database file truncated in place
//! would crash the process with SIGBUS on the next lookup.) A lookup decodes only the fields steering uses,
//! borrowing strings from the database, and allocates nothing.

pub mod build;

use std::fmt;
use std::net::IpAddr;

use maxminddb::{MaxMindDbError, Reader};
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A short upper-case code: ISO 3166-1 country (`IE`), continent (`EU`),
/// or the subdivision part of ISO 3166-2 (`CA` of `US-CA`). Kept inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Code([u8; 4]);

impl Code {
    /// 1 to 4 ASCII letters or digits, any case.
    pub fn new(text: &str) -> Option<Code> {
        let b = text.as_bytes();
        if b.is_empty() || b.len() > 4 || !b.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        let mut c = [0u8; 4];
        for (d, s) in c.iter_mut().zip(b) {
            *d = s.to_ascii_uppercase();
        }
        Some(Code(c))
    }

    pub fn as_str(&self) -> &str {
        let n = self.0.iter().position(|&b| b == 0).unwrap_or(4);
        // only ASCII bytes are ever stored
        std::str::from_utf8(&self.0[..n]).unwrap_or("")
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known about a client address.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Location {
    pub country: Option<Code>,
    pub continent: Option<Code>,
    /// First-level subdivision, without the country prefix.
    pub subdivision: Option<Code>,
    /// (latitude, longitude) in degrees.
    pub coords: Option<(f64, f64)>,
    pub asn: Option<u32>,
    /// Prefix length of the City database network holding the address: how
    /// far the geographic facts are known to extend (0 when unknown).
    pub network_prefix: u8,
}

impl Location {
    /// Whether the database knew anything about the address.
    pub fn is_known(&self) -> bool {
        self.country.is_some() || self.continent.is_some() || self.coords.is_some()
    }
}

/// `country JP, continent AS, subdivision 13, at (35.68, 139.69), AS64502`,
/// or `not in the database`.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(c) = self.country {
            parts.push(format!("country {c}"));
        }
        if let Some(c) = self.continent {
            parts.push(format!("continent {c}"));
        }
        if let Some(s) = self.subdivision {
            parts.push(format!("subdivision {s}"));
        }
        if let Some((lat, lon)) = self.coords {
            parts.push(format!("at ({lat:.2}, {lon:.2})"));
        }
        if let Some(a) = self.asn {
            parts.push(format!("AS{a}"));
        }
        if parts.is_empty() {
            f.write_str("not in the database")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Database bytes, owned in memory: nothing done to the file afterwards
/// can reach a lookup.
pub enum DbBytes {
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for DbBytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            DbBytes::Owned(v) => v,
        }
    }
}

/// Why a database cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GeoError {
    #[error("{which} database is not a valid MaxMind DB: {source}")]
    Invalid {
        which: &'static str,
        #[source]
        source: MaxMindDbError,
    },
    #[error("{which} database has type {found:?}, expected a {expected} database")]
    WrongType {
        which: &'static str,
        found: String,
        expected: &'static str,
    },
}

/// The GeoIP databases of a node.
pub struct GeoIp {
    city: Reader<DbBytes>,
    asn: Option<Reader<DbBytes>>,
}

impl fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoIp")
            .field("city", &self.city.metadata().database_type)
            .field(
                "asn",
                &self.asn.as_ref().map(|a| &a.metadata().database_type),
            )
            .finish()
    }
}

impl GeoIp {
    /// Opens a City database (GeoIP2/GeoLite2 City, or any database with the
    /// City schema) and an optional ASN database, checking each whole.
    pub fn new(city: DbBytes, asn: Option<DbBytes>) -> Result<GeoIp, GeoError> {
        let city = open(city, "City", "city")?;
        let asn = asn.map(|a| open(a, "ASN", "ASN")).transpose()?;
        Ok(GeoIp { city, asn })
    }

    /// The facts about `ip`. Addresses the databases do not know get an
    /// empty [`Location`]; a record that fails to decode counts as unknown.
    pub fn lookup(&self, ip: IpAddr) -> Location {
        let mut loc = Location::default();
        if let Ok(r) = self.city.lookup(ip) {
            loc.network_prefix = match r.network() {
                Ok(net) if net.is_ipv4() == ip.is_ipv4() => net.prefix(),
                _ => 0,
            };
            city_facts(&r, &mut loc);
        }
        if let Some(asn) = &self.asn {
            if let Ok(r) = asn.lookup(ip) {
                if let Ok(Some(rec)) = r.decode::<AsnRecord>() {
                    loc.asn = rec.autonomous_system_number;
                }
            }
        }
        loc
    }

    /// Every network of the City database with what it says, in address
    /// order, for classifying clients ahead of time
    /// ([`crate::classify`]). The ASN database is not read.
    pub(crate) fn networks(&self) -> Networks {
        let mut out = Networks {
            locations: vec![Location::default()],
            v4: Vec::new(),
            v6: Vec::new(),
        };
        let mut ids: std::collections::HashMap<usize, u32> = std::collections::HashMap::new();
        // aliases of the IPv4 subtree are left out: see `ALIASES`
        let options = maxminddb::WithinOptions::default().include_networks_without_data();
        let Ok(all) = self.city.networks(options) else {
            return out;
        };
        for r in all.flatten() {
            let Ok(net) = r.network() else {
                continue;
            };
            let id = match r.offset() {
                None => 0,
                Some(offset) => *ids.entry(offset).or_insert_with(|| {
                    let mut loc = Location::default();
                    city_facts(&r, &mut loc);
                    out.locations.push(loc);
                    (out.locations.len() - 1) as u32
                }),
            };
            match net.ip() {
                IpAddr::V4(a) => out.v4.push((u32::from(a), net.prefix(), id)),
                IpAddr::V6(a) => {
                    let start = u128::from(a);
                    if !ALIASES.iter().any(|&(s, p)| within(start, s, p)) {
                        out.v6.push((start, net.prefix(), id));
                    }
                    // the IPv4 subtree of an IPv6 database: what IPv4
                    // lookups read
                    if start >> 32 == 0 {
                        let (first, prefix) = match net.prefix().checked_sub(96) {
                            Some(p) => (start as u32, p),
                            None => (0, 0), // covers the whole subtree
                        };
                        out.v4.push((first, prefix, id));
                    }
                }
            }
        }
        out
    }

    /// The City database's type and build time, for logs.
    pub fn describe(&self) -> String {
        let m = self.city.metadata();
        format!("{} built {}", m.database_type, m.build_epoch)
    }
}

fn open(
    bytes: DbBytes,
    expected: &'static str,
    which: &'static str,
) -> Result<Reader<DbBytes>, GeoError> {
    let reader =
        Reader::from_source(bytes).map_err(|source| GeoError::Invalid { which, source })?;
    reader
        .verify()
        .map_err(|source| GeoError::Invalid { which, source })?;
    let found = &reader.metadata().database_type;
    if !found.contains(expected) {
        return Err(GeoError::WrongType {
            which,
            found: found.clone(),
            expected,
        });
    }
    Ok(reader)
}

/// IPv6 prefixes whose lookups read the IPv4 subtree (the subtree itself
/// at ::/96, and the aliases MaxMind databases link to it: IPv4-mapped
/// addresses, Teredo, 6to4). A client tree leaves them to GeoIP lookups.
pub(crate) const ALIASES: [(u128, u8); 4] = [
    (0, 96),
    (0xFFFF << 32, 96),
    (0x2001 << 112, 32),
    (0x2002 << 112, 16),
];

/// Whether `a` is inside `start/prefix`.
pub(crate) fn within(a: u128, start: u128, prefix: u8) -> bool {
    let host = 128 - u32::from(prefix);
    a.checked_shr(host) == start.checked_shr(host)
}

/// The City database's networks: `(first address, prefix length, index
/// into locations)`, index 0 being "not in the database".
pub(crate) struct Networks {
    pub locations: Vec<Location>,
    pub v4: Vec<(u32, u8, u32)>,
    pub v6: Vec<(u128, u8, u32)>,
}

/// What a City record says, into `loc`; a record that fails to decode
/// says nothing.
fn city_facts<S: AsRef<[u8]>>(r: &maxminddb::LookupResult<'_, S>, loc: &mut Location) {
    if let Ok(Some(rec)) = r.decode::<CityRecord<'_>>() {
        loc.country = rec.country.and_then(|c| c.iso_code).and_then(Code::new);
        loc.continent = rec.continent.and_then(|c| c.code).and_then(Code::new);
        loc.subdivision = rec
            .subdivisions
            .0
            .and_then(|s| s.iso_code)
            .and_then(Code::new);
        loc.coords = rec.location.and_then(|l| Some((l.latitude?, l.longitude?)));
    }
}

#[derive(Deserialize)]
struct CityRecord<'a> {
    #[serde(borrow, default)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow, default)]
    continent: Option<ContinentCode<'a>>,
    #[serde(borrow, default)]
    subdivisions: FirstOf<'a>,
    #[serde(default)]
    location: Option<Coordinates>,
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct ContinentCode<'a> {
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Coordinates {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

#[derive(Deserialize)]
struct AsnRecord {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
}

/// The first subdivision only (the most general), without collecting the
/// list.
#[derive(Default)]
struct FirstOf<'a>(Option<IsoCode<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for FirstOf<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct First<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for First<'a> {
            type Value = FirstOf<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of subdivisions")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq.next_element::<IsoCode<'a>>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstOf(first))
            }
        }
        d.deserialize_seq(First(std::marker::PhantomData))
    }
}

/// Great-circle distance in kilometres between two (lat, lon) points.
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0;
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests;
