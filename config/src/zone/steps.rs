//! Validation of steered records' step arguments: fence rules, geo maps
//! and cost margins are checked against the record's pool and the probe
//! regions, so a typo in a region name or a country code is an error with
//! its position, not a step that silently matches nothing.

use super::{raw, ClientMatch, CostMargin, FenceRule, GeoMap, Pool, ProbeRegion, Step, CONTINENTS};
use crate::yaml::{index_segment, key_segment};

use super::Checker;

/// Checks each step's arguments against the record's pool and the probe
/// regions, and converts them.
pub(super) fn validate_steps(
    c: &mut Checker<'_>,
    s_path: &str,
    steps: &[raw::Step],
    pool: Option<&Pool>,
    regions: &[ProbeRegion],
) -> Vec<Step> {
    let pool_regions: Vec<&str> = pool
        .map(|p| {
            let mut r: Vec<&str> = p.endpoints.iter().map(|e| e.region.as_str()).collect();
            r.sort_unstable();
            r.dedup();
            r
        })
        .unwrap_or_default();
    let known_region = |c: &mut Checker<'_>, at: &str, region: &str| {
        // without a valid pool, the pool's own error says enough
        if pool.is_some() && !pool_regions.contains(&region) {
            c.err(
                at,
                format!(
                    "no endpoint of the pool is in region {region:?} (regions: {})",
                    pool_regions.join(", ")
                ),
            );
        }
    };
    let mut out = Vec::new();
    for (k, st) in steps.iter().enumerate() {
        let at = index_segment(&format!("{s_path}.steps"), k);
        out.push(match st {
            raw::Step::Health => Step::Health,
            raw::Step::Priority => Step::Priority,
            raw::Step::Nearest => Step::Nearest,
            raw::Step::Weighted(w) => Step::Weighted { sticky: w.sticky },
            raw::Step::First(n) => Step::First(n.0),
            raw::Step::Latency => {
                if regions.is_empty() {
                    c.err(
                        &at,
                        "`latency` needs probe regions: declare them under `regions`",
                    );
                }
                Step::Latency
            }
            raw::Step::Cost(m) => {
                if regions.is_empty() {
                    c.err(
                        &at,
                        "`cost` needs probe regions: declare them under `regions`",
                    );
                }
                let margin = match (m.margin_ms, m.margin_pct) {
                    (Some(ms), None) if ms.is_finite() && ms >= 0.0 => CostMargin::Ms(ms),
                    (None, Some(pct)) if pct.is_finite() && pct >= 0.0 => CostMargin::Percent(pct),
                    (Some(_), Some(_)) => {
                        c.err(&at, "cost: give `margin_ms` or `margin_pct`, not both");
                        CostMargin::Ms(0.0)
                    }
                    (None, None) => {
                        c.err(&at, "cost: give `margin_ms` or `margin_pct`");
                        CostMargin::Ms(0.0)
                    }
                    _ => {
                        c.err(&at, "cost: the margin must be a number >= 0");
                        CostMargin::Ms(0.0)
                    }
                };
                Step::Cost(margin)
            }
            raw::Step::Fence(rules) => {
                let mut out_rules = Vec::new();
                for (target, rule) in rules {
                    let rp = key_segment(&format!("{at}.fence"), target);
                    let is_endpoint =
                        pool.is_some_and(|p| p.endpoints.iter().any(|e| e.id == *target));
                    if !is_endpoint {
                        known_region(c, &rp, target);
                    }
                    if rule.allow.is_none() && rule.deny.is_none() {
                        c.err(&rp, "a fence rule needs `allow` or `deny`");
                    }
                    out_rules.push(FenceRule {
                        target: target.clone(),
                        allow: rule
                            .allow
                            .as_ref()
                            .map(|m| client_match(c, &format!("{rp}.allow"), m)),
                        deny: rule
                            .deny
                            .as_ref()
                            .map(|m| client_match(c, &format!("{rp}.deny"), m)),
                    });
                }
                Step::Fence(out_rules)
            }
            raw::Step::Geo(g) => {
                let gp = format!("{at}.geo");
                let check_list = |c: &mut Checker<'_>, p: &str, list: &[String]| {
                    if list.is_empty() {
                        c.err(p, "expected at least one region");
                    }
                    for (i, r) in list.iter().enumerate() {
                        known_region(c, &index_segment(p, i), r);
                    }
                    list.to_vec()
                };
                let mut map = GeoMap::default();
                for (code, list) in &g.subdivisions {
                    let p = key_segment(&format!("{gp}.subdivisions"), code);
                    let parsed = subdivision(code);
                    if parsed.is_none() {
                        c.key_err(
                            &p,
                            format!("expected a subdivision like US-CA, got {code:?}"),
                        );
                    }
                    let regions = check_list(c, &p, list);
                    if let Some(sd) = parsed {
                        map.subdivisions.push((sd, regions));
                    }
                }
                for (code, list) in &g.countries {
                    let p = key_segment(&format!("{gp}.countries"), code);
                    if !is_country(code) {
                        c.key_err(
                            &p,
                            format!("expected a two-letter country code, got {code:?}"),
                        );
                    }
                    let regions = check_list(c, &p, list);
                    map.countries.push((code.to_ascii_uppercase(), regions));
                }
                for (code, list) in &g.continents {
                    let p = key_segment(&format!("{gp}.continents"), code);
                    if !CONTINENTS.contains(&code.to_ascii_uppercase().as_str()) {
                        c.key_err(
                            &p,
                            format!(
                                "expected a continent code ({}), got {code:?}",
                                CONTINENTS.join(", ")
                            ),
                        );
                    }
                    let regions = check_list(c, &p, list);
                    map.continents.push((code.to_ascii_uppercase(), regions));
                }
                for (i, r) in g.default.iter().enumerate() {
                    known_region(c, &index_segment(&format!("{gp}.default"), i), r);
                }
                map.default = g.default.clone();
                Step::Geo(map)
            }
        });
    }
    out
}

fn is_country(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic())
}

/// `US-CA` → (`US`, `CA`).
fn subdivision(code: &str) -> Option<(String, String)> {
    let (country, sub) = code.split_once('-')?;
    let ok = is_country(country)
        && (1..=3).contains(&sub.len())
        && sub.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then(|| (country.to_ascii_uppercase(), sub.to_ascii_uppercase()))
}

fn client_match(c: &mut Checker<'_>, path: &str, m: &raw::ClientMatch) -> ClientMatch {
    let mut out = ClientMatch::default();
    for (i, code) in m.countries.iter().enumerate() {
        if !is_country(code) {
            c.err(
                &index_segment(&format!("{path}.countries"), i),
                format!("expected a two-letter country code, got {code:?}"),
            );
        }
        out.countries.push(code.to_ascii_uppercase());
    }
    for (i, code) in m.continents.iter().enumerate() {
        let up = code.to_ascii_uppercase();
        if !CONTINENTS.contains(&up.as_str()) {
            c.err(
                &index_segment(&format!("{path}.continents"), i),
                format!(
                    "expected a continent code ({}), got {code:?}",
                    CONTINENTS.join(", ")
                ),
            );
        }
        out.continents.push(up);
    }
    for (i, code) in m.subdivisions.iter().enumerate() {
        match subdivision(code) {
            Some(sd) => out.subdivisions.push(sd),
            None => c.err(
                &index_segment(&format!("{path}.subdivisions"), i),
                format!("expected a subdivision like US-CA, got {code:?}"),
            ),
        }
    }
    out.asns = m.asns.clone();
    for (i, cidr) in m.cidrs.iter().enumerate() {
        match cidr.parse::<ipnet::IpNet>() {
            Ok(n) if n.trunc() == n => out.cidrs.push(n),
            Ok(n) => c.err(
                &index_segment(&format!("{path}.cidrs"), i),
                format!("{cidr} has host bits set; did you mean {}?", n.trunc()),
            ),
            Err(_) => c.err(
                &index_segment(&format!("{path}.cidrs"), i),
                format!("expected a network like 192.0.2.0/24, got {cidr:?}"),
            ),
        }
    }
    out
}
