//! Client trees at the size of a full GeoLite2-City database: a generated
//! database of the same shape (3.4 million IPv4 and 1.1 million IPv6
//! networks, about 120 000 distinct places, countries in runs inside
//! per-continent blocks as the registries allocate them), then the trees
//! of 100 policies built from it: build time, memory, and how much wider
//! the ECS scopes are than the GeoIP network's own prefix.
//!
//! `cargo bench -p meridian-steering --bench trees` (a plain program, not
//! criterion: each figure is one build, timed once). Seeded: every run
//! generates the same database.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use meridian_config::zone::{Endpoint, EndpointAddress, GeoMap, OnAllDown, ProbeRegion, Step};
use meridian_steering::geo::build::{city_database, Place};
use meridian_steering::geo::DbBytes;
use meridian_steering::{classify, GeoIp, Policy};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const V4_NETWORKS: usize = 3_400_000;
const V6_NETWORKS: usize = 1_100_000;
const PLACES_PER_COUNTRY: usize = 2_000;

/// Countries with a continent and a centre, a few per continent.
#[rustfmt::skip]
const COUNTRIES: [(&str, &str, f64, f64); 30] = [
    ("IE", "EU", 53.3, -6.3), ("DE", "EU", 51.0, 10.0), ("FR", "EU", 46.6, 2.3),
    ("GB", "EU", 52.5, -1.5), ("IT", "EU", 42.8, 12.5), ("ES", "EU", 40.4, -3.7),
    ("PL", "EU", 52.1, 19.4), ("NL", "EU", 52.2, 5.3), ("SE", "EU", 62.0, 15.0),
    ("US", "NA", 39.8, -98.6), ("CA", "NA", 56.1, -106.3), ("MX", "NA", 23.6, -102.6),
    ("BR", "SA", -14.2, -51.9), ("AR", "SA", -38.4, -63.6), ("CL", "SA", -35.7, -71.5),
    ("JP", "AS", 36.2, 138.3), ("CN", "AS", 35.9, 104.2), ("IN", "AS", 20.6, 79.0),
    ("KR", "AS", 35.9, 127.8), ("SG", "AS", 1.35, 103.8), ("ID", "AS", -0.8, 113.9),
    ("VN", "AS", 14.1, 108.3), ("TH", "AS", 15.9, 101.0), ("AU", "OC", -25.3, 133.8),
    ("NZ", "OC", -40.9, 174.9), ("ZA", "AF", -30.6, 22.9), ("NG", "AF", 9.1, 8.7),
    ("EG", "AF", 26.8, 30.8), ("KE", "AF", -0.02, 37.9), ("RU", "EU", 61.5, 105.3),
];

const SUBDIVISIONS: [&str; 20] = [
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16", "17",
    "18", "19", "20",
];

/// A place: country index, subdivision, coordinates.
type Spot = (usize, usize, f64, f64);

fn spots(rng: &mut StdRng) -> Vec<Vec<Spot>> {
    COUNTRIES
        .iter()
        .enumerate()
        .map(|(c, &(_, _, lat, lon))| {
            (0..PLACES_PER_COUNTRY)
                .map(|_| {
                    (
                        c,
                        rng.random_range(0..SUBDIVISIONS.len()),
                        (lat + rng.random_range(-6.0..6.0)).clamp(-89.0, 89.0),
                        lon + rng.random_range(-8.0..8.0),
                    )
                })
                .collect()
        })
        .collect()
}

/// A prefix length for the next network: mostly /24s (or /48s), some
/// larger and smaller.
fn prefix(rng: &mut StdRng, v6: bool) -> u8 {
    let r: f64 = rng.random();
    let p = match r {
        r if r < 0.55 => 24,
        r if r < 0.70 => 23,
        r if r < 0.78 => 22,
        r if r < 0.83 => 21,
        r if r < 0.86 => 20,
        r if r < 0.87 => 18,
        _ => 25 + rng.random_range(0..6),
    };
    if v6 {
        p + 24
    } else {
        p
    }
}

/// The continent's countries (indices).
fn of_continent(continent: &str) -> Vec<usize> {
    (0..COUNTRIES.len())
        .filter(|&c| COUNTRIES[c].1 == continent)
        .collect()
}

const CONTINENTS: [&str; 6] = ["EU", "NA", "AS", "SA", "OC", "AF"];

/// Walks address blocks, each given a continent, laying networks end to
/// end with occasional gaps (0.5%); countries come in runs (a new one for
/// 15% of networks, from another continent for 1% of those) and places
/// repeat.
struct Walker<'a> {
    rng: &'a mut StdRng,
    spots: &'a [Vec<Spot>],
    country: usize,
    spot: usize,
}

impl Walker<'_> {
    fn next_spot(&mut self, continent: &str) -> Spot {
        if self.rng.random::<f64>() < 0.15 {
            let countries = of_continent(continent);
            self.country = if self.rng.random::<f64>() < 0.99 {
                countries[self.rng.random_range(0..countries.len())]
            } else {
                self.rng.random_range(0..COUNTRIES.len())
            };
        }
        if self.rng.random::<f64>() < 0.5 {
            self.spot = self.rng.random_range(0..PLACES_PER_COUNTRY);
        }
        self.spots[self.country][self.spot]
    }
}

fn place(network: ipnet::IpNet, s: Spot) -> Place {
    let (country, continent, _, _) = COUNTRIES[s.0];
    Place {
        network,
        country,
        continent,
        subdivision: Some(SUBDIVISIONS[s.1]),
        city: "generated",
        lat: s.2,
        lon: s.3,
    }
}

fn generate() -> Vec<Place> {
    let mut rng = StdRng::seed_from_u64(20261130);
    let spots = spots(&mut rng);
    let mut out = Vec::with_capacity(V4_NETWORKS + V6_NETWORKS);
    let mut w = Walker {
        rng: &mut rng,
        spots: &spots,
        country: 0,
        spot: 0,
    };
    // IPv4: /8 blocks outside reserved space, each with a continent
    let skip = [0u32, 10, 100, 127, 169, 172, 192, 198];
    let mut blocks: Vec<u32> = (1..224).filter(|b| !skip.contains(b)).collect();
    let mut v4 = 0;
    'v4: while v4 < V4_NETWORKS {
        let Some(block) = blocks.pop() else { break };
        let continent = CONTINENTS[w.rng.random_range(0..CONTINENTS.len())];
        let mut at = u64::from(block) << 24;
        let end = (u64::from(block) + 1) << 24;
        while at < end {
            let p = prefix(w.rng, false);
            let size = 1u64 << (32 - p);
            at = at.div_ceil(size) * size;
            if at + size > end {
                break;
            }
            if w.rng.random::<f64>() < 0.005 {
                at += size; // a gap
                continue;
            }
            let net = ipnet::Ipv4Net::new(Ipv4Addr::from(at as u32), p).unwrap();
            let s = w.next_spot(continent);
            out.push(place(net.into(), s));
            at += size;
            v4 += 1;
            if v4 == V4_NETWORKS {
                break 'v4;
            }
        }
    }
    // IPv6: runs of networks inside /32s of each registry's space
    let starts: [(u128, &str); 5] = [
        (0x2a00, "EU"),
        (0x2600, "NA"),
        (0x2400, "AS"),
        (0x2800, "SA"),
        (0x2c00, "AF"),
    ];
    let mut v6 = 0;
    let mut n32 = 0u128;
    while v6 < V6_NETWORKS {
        let (top, continent) = starts[(n32 % 5) as usize];
        let base = (top << 112) | ((n32 / 5) << 96);
        n32 += 1;
        let mut at = base;
        let run = w.rng.random_range(50..1500);
        for _ in 0..run {
            let p = prefix(w.rng, true);
            let size = 1u128 << (128 - p);
            at = at.div_ceil(size) * size;
            if at + size > base + (1u128 << 96) {
                break;
            }
            let net = ipnet::Ipv6Net::new(Ipv6Addr::from(at), p).unwrap();
            let s = w.next_spot(continent);
            out.push(place(net.into(), s));
            at += size;
            v6 += 1;
            if v6 == V6_NETWORKS {
                break;
            }
        }
    }
    out
}

/// 30 endpoints over six regions, at places around the world.
fn pool(rng: &mut StdRng) -> Vec<Endpoint> {
    let regions = [
        "eu-west",
        "eu-central",
        "us-east",
        "us-west",
        "ap-south",
        "ap-east",
    ];
    (0..30)
        .map(|i| {
            let c = COUNTRIES[rng.random_range(0..COUNTRIES.len())];
            Endpoint {
                id: format!("e{i}"),
                address: EndpointAddress::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, i as u8))),
                region: regions[i % regions.len()].into(),
                lat: Some(c.2 + rng.random_range(-3.0..3.0)),
                lon: Some(c.3 + rng.random_range(-3.0..3.0)),
                weight: 1,
                cost: 0.0,
                priority: 1,
                state: meridian_config::zone::AdminState::Enabled,
                bias: 0,
                rtt_ms: Default::default(),
                check_address: None,
                redirect_url: None,
                proxy_url: None,
            }
        })
        .collect()
}

fn geo_map() -> GeoMap {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    GeoMap {
        subdivisions: Vec::new(),
        countries: vec![
            ("JP".into(), s(&["ap-east", "ap-south"])),
            ("IN".into(), s(&["ap-south", "ap-east"])),
        ],
        continents: vec![
            ("EU".into(), s(&["eu-west", "eu-central", "us-east"])),
            ("NA".into(), s(&["us-east", "us-west"])),
            ("AS".into(), s(&["ap-south", "ap-east"])),
        ],
        default: s(&["us-east"]),
    }
}

/// Steering by country for ten countries, the rest by continent.
fn country_map() -> GeoMap {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut map = geo_map();
    map.countries = ["IE", "DE", "FR", "GB", "US", "CA", "JP", "SG", "IN", "BR"]
        .iter()
        .zip([
            "eu-west",
            "eu-central",
            "eu-central",
            "eu-west",
            "us-east",
            "us-west",
            "ap-east",
            "ap-south",
            "ap-south",
            "us-east",
        ])
        .map(|(c, r)| (c.to_string(), s(&[r])))
        .collect();
    map
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let t = Instant::now();
    let places = generate();
    let bytes = city_database(&places).expect("database builds");
    let (v4, v6) = places.iter().fold((0, 0), |(a, b), p| match p.network {
        ipnet::IpNet::V4(_) => (a + 1, b),
        ipnet::IpNet::V6(_) => (a, b + 1),
    });
    println!(
        "database: {v4} IPv4 and {v6} IPv6 networks, {:.1} MB, generated in {:.1} s",
        bytes.len() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    drop(places);
    let geo = GeoIp::new(DbBytes::Owned(bytes), None).expect("opens");

    // 100 policies: 25 pools of 30 endpoints, each with a record steered
    // by a continent map, one by a country map, one by distance and one
    // by RTT from the nearest of four probe regions
    let mut rng = StdRng::seed_from_u64(7);
    let probes: Vec<ProbeRegion> = [
        ("eu", 50.1, 8.7),
        ("us", 39.0, -77.5),
        ("ap", 1.3, 103.8),
        ("sa", -23.5, -46.6),
    ]
    .iter()
    .map(|&(name, lat, lon)| ProbeRegion {
        name: name.into(),
        lat: Some(lat),
        lon: Some(lon),
    })
    .collect();
    let mut policies = Vec::new();
    let pools: Vec<Vec<Endpoint>> = (0..25).map(|_| pool(&mut rng)).collect();
    for p in &pools {
        for steps in [
            vec![Step::Health, Step::Geo(geo_map()), Step::First(1)],
            vec![Step::Health, Step::Geo(country_map()), Step::First(1)],
            vec![Step::Health, Step::Nearest, Step::First(1)],
            vec![Step::Health, Step::Latency, Step::First(1)],
        ] {
            policies.push(Policy::compile(&steps, &OnAllDown::NoData, p, &[], &probes));
        }
    }
    let mut distinct: Vec<[u64; 2]> = policies.iter().filter_map(Policy::classifier).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let firsts: Vec<&Policy> = distinct
        .iter()
        .map(|c| {
            policies
                .iter()
                .find(|p| p.classifier() == Some(*c))
                .unwrap()
        })
        .collect();

    let t = Instant::now();
    let trees = classify::build(&geo, &firsts);
    let build = t.elapsed();
    let rss_after = rss_kb();
    let memory: usize = trees.iter().flatten().map(|t| t.memory()).sum();
    println!(
        "trees: {} policies, {} distinct classifiers, {} trees kept (the rest look clients up), built in {:.2} s, {:.1} MB held; process RSS {:.0} MB",
        policies.len(),
        trees.len(),
        trees.iter().flatten().count(),
        build.as_secs_f64(),
        memory as f64 / 1e6,
        rss_after as f64 / 1e3
    );
    let tree_of = |i: usize| {
        let at = firsts
            .iter()
            .position(|p| p.classifier() == policies[i].classifier())
            .unwrap();
        trees[at].as_ref()
    };
    let names = [
        "continent map",
        "country map",
        "nearest",
        "latency (probe region)",
    ];
    for (i, name) in names.iter().enumerate() {
        match tree_of(i) {
            Some(t) => {
                let (r4, r6, classes) = t.size();
                println!(
                    "  {name}: {r4} IPv4 and {r6} IPv6 ranges, {classes} classes, {:.1} MB",
                    t.memory() as f64 / 1e6
                );
            }
            None => println!("  {name}: no tree (over {} classes)", classify::MAX_CLASSES),
        }
    }

    // scopes: clients drawn from the database's networks, ECS /24 and /56
    let mut rng = StdRng::seed_from_u64(11);
    for (family, source, bits) in [("IPv4", 24u8, 32u32), ("IPv6", 56, 128)] {
        for (i, name) in names.iter().enumerate() {
            let Some(tree) = tree_of(i) else { continue };
            let (mut narrow, mut wide, mut n) = (0u64, 0u64, 0u64);
            while n < 100_000 {
                let ip = if bits == 32 {
                    IpAddr::V4(Ipv4Addr::from(rng.random::<u32>() & 0xFFFF_FF00))
                } else {
                    let top = [0x2a00u128, 0x2600, 0x2400, 0x2800, 0x2c00][rng.random_range(0..5)];
                    let a = (top << 112)
                        | (rng.random_range(0..300u128) << 96)
                        | (rng.random::<u128>() & ((1 << 96) - 1));
                    IpAddr::V6(Ipv6Addr::from(a & !((1u128 << 72) - 1)))
                };
                let loc = geo.lookup(ip);
                if !loc.is_known() {
                    continue;
                }
                let Some((_, scope)) = tree.classify(ip) else {
                    continue;
                };
                narrow += u64::from(loc.network_prefix.min(source));
                wide += u64::from(scope.min(source));
                n += 1;
            }
            println!(
                "  {family} /{source} clients, {name}: scope /{:.1} from the GeoIP network, /{:.1} from the tree ({:.1} bits wider)",
                narrow as f64 / n as f64,
                wide as f64 / n as f64,
                (narrow as f64 - wide as f64) / n as f64
            );
        }
    }

    // the per-query cost: a tree's class against a GeoIP lookup
    let geo_tree = tree_of(0).expect("the continent map has a tree");
    let clients: Vec<IpAddr> = (0..100_000)
        .map(|_| IpAddr::V4(Ipv4Addr::from(rng.random::<u32>())))
        .collect();
    let t = Instant::now();
    let mut sink = 0u64;
    for &c in &clients {
        sink += geo_tree.classify(c).map_or(0, |(_, s)| u64::from(s));
    }
    let tree_ns = t.elapsed().as_nanos() as f64 / clients.len() as f64;
    let t = Instant::now();
    for &c in &clients {
        sink += u64::from(geo.lookup(c).network_prefix);
    }
    let lookup_ns = t.elapsed().as_nanos() as f64 / clients.len() as f64;
    println!("per query: tree {tree_ns:.0} ns, GeoIP lookup {lookup_ns:.0} ns ({sink})");
}
