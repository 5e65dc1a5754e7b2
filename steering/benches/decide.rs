//! Steering speed: a GeoIP lookup, and a full decision for pools of 3, 30
//! and 300 endpoints through health → geo → latency → cost →
//! weighted(sticky) → first 2, excluding the lookup.
//!
//! Run: `cargo bench -p meridian-steering --bench decide`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use meridian_config::zone::{
    AdminState, CostMargin, Endpoint, EndpointAddress, GeoMap, OnAllDown, ProbeRegion, Step,
};
use meridian_steering::geo::build::{asn_database, city_database, demo_asns, demo_places};
use meridian_steering::geo::DbBytes;
use meridian_steering::{Context, GeoIp, Policy};
use rand::rngs::SmallRng;
use rand::SeedableRng;

const REGIONS: [(&str, f64, f64); 3] = [
    ("eu-west", 53.3, -6.3),
    ("us-east", 39.0, -77.5),
    ("ap-south", 19.1, 72.9),
];

/// `n` endpoints spread over three regions, with coordinates, costs and an
/// RTT from every probe region.
fn pool(n: usize) -> Vec<Endpoint> {
    (0..n)
        .map(|i| {
            let (region, lat, lon) = REGIONS[i % 3];
            let rtt_ms: BTreeMap<String, f64> = REGIONS
                .iter()
                .enumerate()
                .map(|(k, (r, _, _))| {
                    (
                        r.to_string(),
                        if k == i % 3 {
                            5.0 + (i % 7) as f64
                        } else {
                            80.0 + (i % 11) as f64
                        },
                    )
                })
                .collect();
            Endpoint {
                id: format!("{region}-{i}"),
                address: EndpointAddress::Ip(IpAddr::from([
                    10,
                    0,
                    (i / 250) as u8,
                    (i % 250) as u8,
                ])),
                region: region.to_string(),
                lat: Some(lat + (i % 5) as f64 * 0.1),
                lon: Some(lon),
                weight: 1 + (i % 4) as u16,
                cost: (i % 3) as f64,
                priority: 1,
                state: AdminState::Enabled,
                bias: 0,
                rtt_ms,
                check_address: None,
                redirect_url: None,
                proxy_url: None,
            }
        })
        .collect()
}

fn pipeline() -> Vec<Step> {
    let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        Step::Health,
        Step::Geo(GeoMap {
            subdivisions: vec![],
            countries: vec![],
            continents: vec![
                ("EU".into(), l(&["eu-west", "us-east"])),
                ("NA".into(), l(&["us-east", "eu-west"])),
                ("AS".into(), l(&["ap-south", "eu-west"])),
            ],
            default: l(&["us-east"]),
        }),
        Step::Latency,
        Step::Cost(CostMargin::Ms(10.0)),
        Step::Weighted { sticky: true },
        Step::First(2),
    ]
}

fn geo() -> GeoIp {
    GeoIp::new(
        DbBytes::Owned(city_database(&demo_places()).unwrap()),
        Some(DbBytes::Owned(asn_database(&demo_asns()).unwrap())),
    )
    .unwrap()
}

fn bench_lookup(c: &mut Criterion) {
    let g = geo();
    let ip: IpAddr = "192.0.2.77".parse().unwrap();
    c.bench_function("geoip_lookup_city_and_asn", |b| {
        b.iter(|| g.lookup(black_box(ip)))
    });
}

fn bench_decide(c: &mut Criterion) {
    let g = geo();
    let regions: Vec<ProbeRegion> = REGIONS
        .iter()
        .map(|(n, lat, lon)| ProbeRegion {
            name: n.to_string(),
            lat: Some(*lat),
            lon: Some(*lon),
        })
        .collect();
    let client: IpAddr = "192.0.2.0".parse().unwrap();
    let location = g.lookup(client);
    let mut group = c.benchmark_group("decide_geo_latency_cost_sticky_first2");
    for n in [3usize, 30, 300] {
        let pool = pool(n);
        let policy = Policy::compile(&pipeline(), &OnAllDown::FailOpen, &pool, &[], &regions);
        let mut rng = SmallRng::seed_from_u64(1);
        let mut out = Vec::with_capacity(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let mut ctx = Context {
                    client: Some(black_box(client)),
                    client_prefix: 24,
                    location: Some(&location),
                    rng: &mut rng,
                    class: None,
                };
                policy.decide(&pool, &mut ctx, &mut out, None)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_lookup, bench_decide);
criterion_main!(benches);
