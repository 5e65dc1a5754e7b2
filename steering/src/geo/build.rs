//! Small MaxMind databases built in memory, in the GeoIP2 City and
//! GeoLite2 ASN schemas: the demo database `meridian dev` serves with, and
//! the databases tests steer by. [`demo_places`] maps the documentation
//! prefixes (RFC 5737, RFC 3849) to three continents.

use std::collections::BTreeMap;

use mmdb_writer::ipnet::IpNet;
use mmdb_writer::Writer;
use serde::Serialize;

/// One network of a City database.
#[derive(Debug, Clone)]
pub struct Place {
    pub network: IpNet,
    pub country: &'static str,
    pub continent: &'static str,
    pub subdivision: Option<&'static str>,
    pub city: &'static str,
    pub lat: f64,
    pub lon: f64,
}

/// One network of an ASN database.
#[derive(Debug, Clone)]
pub struct AsnBlock {
    pub network: IpNet,
    pub asn: u32,
    pub org: &'static str,
}

#[derive(Serialize)]
struct Names<'a> {
    names: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
struct CityRecord<'a> {
    city: Names<'a>,
    continent: Continent<'a>,
    country: Country<'a>,
    location: Location,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subdivisions: Vec<Country<'a>>,
}

#[derive(Serialize)]
struct Continent<'a> {
    code: &'a str,
}

#[derive(Serialize)]
struct Country<'a> {
    iso_code: &'a str,
}

#[derive(Serialize)]
struct Location {
    latitude: f64,
    longitude: f64,
}

#[derive(Serialize)]
struct AsnRecord<'a> {
    autonomous_system_number: u32,
    autonomous_system_organization: &'a str,
}

/// Why a database could not be built.
pub type BuildError = mmdb_writer::Error;

/// A City database (type `GeoLite2-City`) holding `places`.
pub fn city_database(places: &[Place]) -> Result<Vec<u8>, BuildError> {
    let mut w = Writer::builder("GeoLite2-City")
        .description(&[("en", "Meridian generated City database")])
        .build();
    for p in places {
        let record = CityRecord {
            city: Names {
                names: BTreeMap::from([("en", p.city)]),
            },
            continent: Continent { code: p.continent },
            country: Country {
                iso_code: p.country,
            },
            location: Location {
                latitude: p.lat,
                longitude: p.lon,
            },
            subdivisions: p
                .subdivision
                .map(|s| Country { iso_code: s })
                .into_iter()
                .collect(),
        };
        w.insert(p.network, &record)?;
    }
    w.to_bytes()
}

/// An ASN database (type `GeoLite2-ASN`) holding `blocks`.
pub fn asn_database(blocks: &[AsnBlock]) -> Result<Vec<u8>, BuildError> {
    let mut w = Writer::builder("GeoLite2-ASN")
        .description(&[("en", "Meridian generated ASN database")])
        .build();
    for b in blocks {
        w.insert(
            b.network,
            &AsnRecord {
                autonomous_system_number: b.asn,
                autonomous_system_organization: b.org,
            },
        )?;
    }
    w.to_bytes()
}

fn net(s: &str) -> IpNet {
    s.parse().expect("valid demo network")
}

/// The documentation prefixes on three continents: Europe (IE, DE), North
/// America (US) and Asia (JP, IN), each IPv4 /24 split in two /25s, and one
/// IPv6 /48 per continent inside 2001:db8::/32.
pub fn demo_places() -> Vec<Place> {
    #[rustfmt::skip]
    const PLACES: [(&str, &str, &str, &str, &str, f64, f64); 9] = [
        ("192.0.2.0/25", "IE", "EU", "L", "Dublin", 53.35, -6.26),
        ("192.0.2.128/25", "DE", "EU", "HE", "Frankfurt", 50.11, 8.68),
        ("198.51.100.0/25", "US", "NA", "VA", "Ashburn", 39.04, -77.49),
        ("198.51.100.128/25", "US", "NA", "CA", "San Francisco", 37.77, -122.42),
        ("203.0.113.0/25", "JP", "AS", "13", "Tokyo", 35.68, 139.69),
        ("203.0.113.128/25", "IN", "AS", "MH", "Mumbai", 19.08, 72.88),
        ("2001:db8:1::/48", "IE", "EU", "L", "Dublin", 53.35, -6.26),
        ("2001:db8:2::/48", "US", "NA", "VA", "Ashburn", 39.04, -77.49),
        ("2001:db8:3::/48", "JP", "AS", "13", "Tokyo", 35.68, 139.69),
    ];
    PLACES
        .iter()
        .map(
            |&(network, country, continent, subdivision, city, lat, lon)| Place {
                network: net(network),
                country,
                continent,
                subdivision: Some(subdivision),
                city,
                lat,
                lon,
            },
        )
        .collect()
}

/// Documentation ASNs (RFC 5398) for the same prefixes.
pub fn demo_asns() -> Vec<AsnBlock> {
    let b = |network, asn, org| AsnBlock {
        network: net(network),
        asn,
        org,
    };
    vec![
        b("192.0.2.0/24", 64500, "Example Europe Net"),
        b("198.51.100.0/24", 64501, "Example America Net"),
        b("203.0.113.0/24", 64502, "Example Asia Net"),
        b("2001:db8::/32", 64503, "Example IPv6 Net"),
    ]
}
