use super::build::{asn_database, city_database, demo_asns, demo_places};
use super::*;

fn demo() -> GeoIp {
    GeoIp::new(
        DbBytes::Owned(city_database(&demo_places()).unwrap()),
        Some(DbBytes::Owned(asn_database(&demo_asns()).unwrap())),
    )
    .unwrap()
}

fn code(s: &str) -> Option<Code> {
    Code::new(s)
}

#[test]
fn demo_database_lookups() {
    let g = demo();
    let ie = g.lookup("192.0.2.10".parse().unwrap());
    assert_eq!(ie.country, code("IE"));
    assert_eq!(ie.continent, code("EU"));
    assert_eq!(ie.subdivision, code("L"));
    assert_eq!(ie.coords, Some((53.35, -6.26)));
    assert_eq!(ie.asn, Some(64500));
    assert_eq!(ie.network_prefix, 25);

    let us = g.lookup("198.51.100.200".parse().unwrap());
    assert_eq!((us.country, us.subdivision), (code("US"), code("CA")));
    let jp6 = g.lookup("2001:db8:3::1".parse().unwrap());
    assert_eq!(
        (jp6.continent, jp6.network_prefix, jp6.asn),
        (code("AS"), 48, Some(64503))
    );
}

#[test]
fn unknown_addresses_are_empty() {
    let g = demo();
    let none = g.lookup("10.1.2.3".parse().unwrap());
    assert!(!none.is_known());
    assert_eq!(none.asn, None);
    // the prefix still says how far "unknown" extends
    assert!(
        none.network_prefix > 0 && none.network_prefix <= 8,
        "{}",
        none.network_prefix
    );
}

#[test]
fn corrupt_and_wrong_databases_are_rejected() {
    let err = GeoIp::new(DbBytes::Owned(b"not a database".to_vec()), None).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("city database is not a valid MaxMind DB"),
        "{err}"
    );
    let asn_as_city =
        GeoIp::new(DbBytes::Owned(asn_database(&demo_asns()).unwrap()), None).unwrap_err();
    assert!(
        asn_as_city.to_string().contains("expected a City database"),
        "{asn_as_city}"
    );
    let mut truncated = city_database(&demo_places()).unwrap();
    truncated.truncate(truncated.len() / 2);
    assert!(GeoIp::new(DbBytes::Owned(truncated), None).is_err());
}

/// MaxMind's own test databases, where the project's shared folder has them:
/// real files must read the same way as generated ones.
#[test]
fn maxmind_test_databases_read_the_same_way() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/geoip");
    let (Ok(city), Ok(asn)) = (
        std::fs::read(dir.join("GeoLite2-City-Test.mmdb")),
        std::fs::read(dir.join("GeoLite2-ASN-Test.mmdb")),
    ) else {
        eprintln!("no shared GeoIP test databases beside the project; skipping");
        return;
    };
    let g = GeoIp::new(DbBytes::Owned(city), Some(DbBytes::Owned(asn))).unwrap();
    // 2.125.160.216 is Boxford, England in MaxMind's test data
    let gb = g.lookup("2.125.160.216".parse().unwrap());
    assert_eq!(gb.country, code("GB"));
    assert_eq!(gb.continent, code("EU"));
    assert_eq!(gb.subdivision, code("ENG"));
    let (lat, lon) = gb.coords.unwrap();
    assert!(
        (lat - 51.75).abs() < 0.01 && (lon + 1.25).abs() < 0.01,
        "{lat} {lon}"
    );
    // 1.128.0.0/11 is AS 1221 (Telstra) in the ASN test data
    assert_eq!(g.lookup("1.128.0.1".parse().unwrap()).asn, Some(1221));
    for bad in std::fs::read_dir(dir.join("bad-data")).unwrap().flatten() {
        let bytes = std::fs::read(bad.path()).unwrap();
        assert!(
            GeoIp::new(DbBytes::Owned(bytes), None).is_err(),
            "{} accepted",
            bad.path().display()
        );
    }
}

#[test]
fn codes() {
    assert_eq!(Code::new("ie").unwrap().as_str(), "IE");
    assert_eq!(Code::new("ENG").unwrap().as_str(), "ENG");
    assert!(
        Code::new("").is_none() && Code::new("TOOLONG").is_none() && Code::new("U-S").is_none()
    );
}

#[test]
fn distances() {
    let dublin = (53.35, -6.26);
    let tokyo = (35.68, 139.69);
    let d = distance_km(dublin, tokyo);
    assert!((d - 9_600.0).abs() < 150.0, "{d}");
    assert_eq!(distance_km(dublin, dublin), 0.0);
    // antipodes do not produce NaN
    assert!((distance_km((0.0, 0.0), (0.0, 180.0)) - 20_015.0).abs() < 5.0);
}
