//! What a node spends on one probe report: applying a full report (every
//! endpoint of a checked pool, from one of three regions) to the replicated
//! health state, and deriving the observations the steering steps read,
//! for pools of 100, 1000 and 10 000 endpoints.
//!
//! Run: `cargo bench -p meridian-probes --bench apply`

use std::fmt::Write;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use meridian_config::ZoneSpec;
use meridian_probes::health::{HealthState, Observation, Report};

const REGIONS: [&str; 3] = ["eu", "us", "ap"];

/// One pool of `n` endpoints, checked from the three regions, quorum 2.
fn spec(n: usize) -> ZoneSpec {
    let mut yaml = String::from(
        "regions: {eu: {}, us: {}, ap: {}}\npools:\n  web:\n    \
         check: {kind: tcp, port: 80, interval: 1s, regions: [eu, us, ap], quorum: 2}\n    \
         endpoints:\n",
    );
    for i in 0..n {
        let region = REGIONS[i % 3];
        let (hi, lo) = (i / 250, i % 250);
        writeln!(
            yaml,
            "      - {{id: web-{i}, address: 10.0.{hi}.{lo}, region: {region}}}"
        )
        .unwrap();
    }
    meridian_config::zone::parse("bench.yaml", &yaml).expect("valid spec")
}

/// Every endpoint up, from `region`, as an agent reports each interval.
fn report(n: usize, region: &str) -> Report {
    Report {
        region: region.into(),
        agent: format!("agent-{region}"),
        observations: (0..n)
            .map(|i| Observation {
                pool: "web".into(),
                endpoint: format!("web-{i}"),
                up: true,
                ok: true,
                connect_ms: Some(0.2 + (i % 7) as f64 * 0.01),
                ttfb_ms: None,
                error: None,
            })
            .collect(),
    }
}

fn apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("health");
    for n in [100, 1000, 10_000] {
        let spec = spec(n);
        let reports: Vec<Report> = REGIONS.iter().map(|r| report(n, r)).collect();
        // the steady state: every region has voted on every endpoint
        let mut state = HealthState::default();
        for (t, r) in reports.iter().enumerate() {
            state.apply_report(&spec, t as u64, r);
        }
        let mut at = REGIONS.len() as u64;
        g.bench_with_input(BenchmarkId::new("apply_report", n), &n, |b, _| {
            b.iter(|| {
                at += 1;
                let r = &reports[at as usize % REGIONS.len()];
                black_box(state.apply_report(&spec, at, r))
            })
        });
        g.bench_with_input(BenchmarkId::new("observations", n), &n, |b, _| {
            b.iter(|| black_box(state.observations(&spec)))
        });
    }
    g.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
