//! The steps. Each takes the ordered candidate list and leaves a new one,
//! notes why (only when tracing), and says which client bits it used.

use std::net::IpAddr;

use meridian_config::zone::{AdminState, ClientMatch, CostMargin, Endpoint, FenceRule, GeoMap};
use rand::RngCore;

use crate::classify::{self, StageKey};
use crate::geo::{Code, Location};
use crate::table::{arc_km, mix, unit_vector, Table};
use crate::{Candidate, Context, Effects};

/// Client bits a sticky choice depends on: resolvers send /24 and /56
/// subnets; all clients of one IPv4 /24 or IPv6 /48 share an endpoint.
pub(crate) const STICKY_V4_BITS: u8 = 24;
pub(crate) const STICKY_V6_BITS: u8 = 48;

fn ep(pool: &[Endpoint], c: Candidate) -> &Endpoint {
    &pool[usize::from(c)]
}

pub(crate) fn health(
    pool: &[Endpoint],
    table: &Table,
    list: &mut Vec<Candidate>,
    fx: &mut Effects<'_>,
) {
    list.retain(|&c| {
        let e = ep(pool, c);
        if e.state != AdminState::Enabled {
            fx.note(|| format!("dropped {} (admin state {:?})", e.id, e.state));
            false
        } else if !table.up[usize::from(c)] {
            fx.note(|| format!("dropped {} (down by the probes' verdict)", e.id));
            false
        } else {
            true
        }
    });
}

pub(crate) fn priority(pool: &[Endpoint], list: &mut Vec<Candidate>, fx: &mut Effects<'_>) {
    let Some(best) = list.iter().map(|&c| ep(pool, c).priority).min() else {
        return;
    };
    let before = list.len();
    list.retain(|&c| ep(pool, c).priority == best);
    if list.len() < before {
        let dropped = before - list.len();
        fx.note(|| format!("kept priority tier {best}, dropped {dropped} in later tiers"));
    }
}

/// Drops zero-weight candidates while any candidate has weight: weight 0
/// means "only when every weight is 0" (as in Route 53).
pub(crate) fn drop_zero_weights(pool: &[Endpoint], list: &mut Vec<Candidate>) {
    if list.iter().any(|&c| ep(pool, c).weight > 0) {
        list.retain(|&c| ep(pool, c).weight > 0);
    }
}

/// Weighted draw without replacement for the first `picks` places; the
/// rest keep their order.
pub(crate) fn weighted(
    pool: &[Endpoint],
    list: &mut [Candidate],
    picks: usize,
    rng: &mut dyn RngCore,
    fx: &mut Effects<'_>,
) {
    let weight = |c: Candidate| u64::from(ep(pool, c).weight);
    let mut total: u64 = list.iter().map(|&c| weight(c)).sum();
    let uniform = total == 0;
    if uniform {
        total = list.len() as u64;
    }
    let w = |c: Candidate| if uniform { 1 } else { weight(c) };
    let mut placed = 0;
    while placed < list.len().min(picks) && total > 0 {
        let mut r = rng.next_u64() % total;
        let mut chosen = placed;
        for (k, &c) in list.iter().enumerate().skip(placed) {
            let cw = w(c);
            if r < cw {
                chosen = k;
                break;
            }
            r -= cw;
        }
        total -= w(list[chosen]);
        // move the chosen one into place, keeping the others' order
        list[placed..=chosen].rotate_right(1);
        placed += 1;
    }
    fx.note(|| {
        if uniform {
            "all weights are 0: drew uniformly".to_string()
        } else {
            format!("drew {placed} by weight")
        }
    });
}

/// The client subnet sticky choices hash: the address cut to what is known
/// and to the sticky granularity.
fn sticky_key(ip: IpAddr, known: u8) -> (u64, u64, u8) {
    match ip {
        IpAddr::V4(v4) => {
            let bits = known.min(STICKY_V4_BITS);
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            (u64::from(u32::from(v4) & mask), 4, bits)
        }
        IpAddr::V6(v6) => {
            let bits = known.min(STICKY_V6_BITS);
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            let v = u128::from(v6) & mask;
            ((v >> 64) as u64, v as u64 ^ 6, bits)
        }
    }
}

/// Reorders `list` by `key`, smallest first, computing each key once; ties
/// keep their order. Returns the keys with their candidates, in the new
/// order.
fn order_by(list: &mut Vec<Candidate>, key: impl Fn(Candidate) -> f64) -> Vec<(f64, Candidate)> {
    let mut keyed: Vec<(f64, Candidate)> = list.iter().map(|&c| (key(c), c)).collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    list.clear();
    list.extend(keyed.iter().map(|k| k.1));
    keyed
}

/// Weighted rendezvous (highest-random-weight) hashing: each candidate
/// scores −w / ln(u), u a uniform hash of (client subnet, endpoint id), and
/// candidates are ordered by score. A subnet keeps its endpoint across
/// queries and nodes; removing an endpoint moves only the subnets it had;
/// each endpoint wins a share of subnets proportional to its weight.
pub(crate) fn sticky(
    pool: &[Endpoint],
    table: &Table,
    list: &mut Vec<Candidate>,
    ctx: &Context<'_>,
    fx: &mut Effects<'_>,
) {
    let Some(client) = ctx.client else {
        fx.note(|| "no client address: order kept".to_string());
        return;
    };
    let (hi, lo, bits) = sticky_key(client, ctx.client_prefix);
    fx.depends(bits);
    let uniform = list.iter().all(|&c| ep(pool, c).weight == 0);
    // highest score first: order by the negated score
    order_by(list, |c| {
        let h = mix(hi ^ mix(lo ^ table.seed[usize::from(c)]));
        // 53 random bits as a float strictly inside (0, 1)
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let w = if uniform {
            1.0
        } else {
            f64::from(ep(pool, c).weight)
        };
        w / u.ln()
    });
    fx.note(|| format!("hashed client subnet {client}/{bits}"));
}

/// Orders by great-circle distance from the client, scaled by each
/// endpoint's bias; endpoints without coordinates go last.
pub(crate) fn nearest(
    pool: &[Endpoint],
    table: &Table,
    list: &mut Vec<Candidate>,
    ctx: &Context<'_>,
    key: Option<&StageKey>,
    fx: &mut Effects<'_>,
) {
    let Some(loc) = ctx.location else {
        match key {
            Some(StageKey::Ranks(ranks)) => {
                classify::sort_by_rank(list, ranks);
                fx.note(|| "by distance, as the client's class ranks them".to_string());
            }
            Some(_) => fx.note(|| "client location unknown: order kept".to_string()),
            None => fx.note(|| "no GeoIP database: order kept".to_string()),
        }
        return;
    };
    fx.depends(loc.network_prefix);
    let Some((lat, lon)) = loc.coords else {
        fx.note(|| "client location unknown: order kept".to_string());
        return;
    };
    let client = unit_vector(lat, lon);
    let keyed = order_by(list, |c| biased_km(table, client, usize::from(c)));
    fx.note(|| {
        let parts: Vec<String> = keyed
            .iter()
            .map(|(d, c)| {
                if d.is_finite() {
                    format!("{} {:.0} km", ep(pool, *c).id, d)
                } else {
                    format!("{} (no coordinates)", ep(pool, *c).id)
                }
            })
            .collect();
        format!(
            "from ({lat:.2}, {lon:.2}), biased distance: {}",
            parts.join(", ")
        )
    });
}

/// Endpoint `i`'s distance from `client` scaled by its bias; infinite
/// without coordinates.
fn biased_km(table: &Table, client: [f64; 3], i: usize) -> f64 {
    table.unit[i].map_or(f64::INFINITY, |u| arc_km(client, u) * table.bias[i])
}

/// Each endpoint's rank by biased distance from `loc` (which has
/// coordinates), for a client class: `nearest` orders as these ranks do.
pub(crate) fn nearest_ranks(table: &Table, loc: &Location) -> Box<[u16]> {
    let Some((lat, lon)) = loc.coords else {
        return Box::new([]);
    };
    let client = unit_vector(lat, lon);
    let keys: Vec<f64> = (0..table.unit.len())
        .map(|i| biased_km(table, client, i))
        .collect();
    classify::ranks(&keys)
}

/// The RTTs from the probe region nearest the client, which depends on the
/// client's location; `None` (noted) when there is no such region.
fn rtt_row<'t>(
    table: &'t Table,
    probe: Option<usize>,
    ctx: &Context<'_>,
    fx: &mut Effects<'_>,
) -> Option<(usize, &'t [Option<f64>])> {
    let Some(p) = probe else {
        fx.note(|| "client location unknown or no probe regions: order kept".to_string());
        return None;
    };
    if let Some(loc) = ctx.location {
        fx.depends(loc.network_prefix);
    }
    Some((p, &table.rtt[p]))
}

/// Orders by RTT from the probe region nearest the client; unmeasured
/// endpoints rank after measured ones.
pub(crate) fn latency(
    table: &Table,
    list: &mut [Candidate],
    probe: Option<usize>,
    ctx: &Context<'_>,
    fx: &mut Effects<'_>,
) {
    let Some((p, rtt)) = rtt_row(table, probe, ctx, fx) else {
        return;
    };
    list.sort_by(|a, b| {
        let ra = rtt[usize::from(*a)].unwrap_or(f64::INFINITY);
        let rb = rtt[usize::from(*b)].unwrap_or(f64::INFINITY);
        ra.total_cmp(&rb)
    });
    fx.note(|| format!("RTT from probe region {}", table.probes[p].0));
}

/// Among candidates within the margin of the best RTT (from the probe
/// region nearest the client), the cheapest first; ties and everything
/// else keep their order.
pub(crate) fn cost(
    pool: &[Endpoint],
    table: &Table,
    list: &mut [Candidate],
    probe: Option<usize>,
    margin: CostMargin,
    ctx: &Context<'_>,
    fx: &mut Effects<'_>,
) {
    let Some((p, rtt)) = rtt_row(table, probe, ctx, fx) else {
        return;
    };
    let Some(best) = list
        .iter()
        .filter_map(|&c| rtt[usize::from(c)])
        .min_by(f64::total_cmp)
    else {
        fx.note(|| "no measured RTT among candidates: order kept".to_string());
        return;
    };
    let limit = match margin {
        CostMargin::Ms(ms) => best + ms,
        CostMargin::Percent(pct) => best * (1.0 + pct / 100.0),
    };
    let near = |c: Candidate| rtt[usize::from(c)].is_some_and(|r| r <= limit);
    list.sort_by(|&a, &b| match (near(a), near(b)) {
        (true, true) => ep(pool, a).cost.total_cmp(&ep(pool, b).cost),
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => std::cmp::Ordering::Equal,
    });
    fx.note(|| {
        format!(
            "best RTT {best:.1} ms from {}: cheapest within {limit:.1} ms first",
            table.probes[p].0
        )
    });
}

/// Clients, compiled: codes as [`Code`]s.
#[derive(Debug, Clone, Default)]
struct Matcher {
    countries: Vec<Code>,
    continents: Vec<Code>,
    subdivisions: Vec<(Code, Code)>,
    asns: Vec<u32>,
    cidrs: Vec<ipnet::IpNet>,
}

impl Matcher {
    fn new(m: &ClientMatch) -> Matcher {
        let codes = |v: &[String]| v.iter().filter_map(|c| Code::new(c)).collect();
        Matcher {
            countries: codes(&m.countries),
            continents: codes(&m.continents),
            subdivisions: m
                .subdivisions
                .iter()
                .filter_map(|(c, s)| Some((Code::new(c)?, Code::new(s)?)))
                .collect(),
            asns: m.asns.clone(),
            cidrs: m.cidrs.clone(),
        }
    }

    fn uses_geo(&self) -> bool {
        !(self.countries.is_empty() && self.continents.is_empty() && self.subdivisions.is_empty())
    }

    /// Whether the client matches any item. Facts that are unknown match
    /// nothing; a CIDR matches only when the known client bits cover it.
    fn matches(&self, ctx: &Context<'_>) -> bool {
        let loc = ctx.location.copied().unwrap_or_default();
        let has = |list: &[Code], v: Option<Code>| v.is_some_and(|v| list.contains(&v));
        has(&self.countries, loc.country)
            || has(&self.continents, loc.continent)
            || loc
                .country
                .zip(loc.subdivision)
                .is_some_and(|cs| self.subdivisions.contains(&cs))
            || loc.asn.is_some_and(|a| self.asns.contains(&a))
            || ctx.client.is_some_and(|ip| {
                self.cidrs
                    .iter()
                    .any(|n| n.prefix_len() <= ctx.client_prefix && n.contains(&ip))
            })
    }
}

#[derive(Debug, Clone)]
struct Rule {
    target: String,
    allow: Option<Matcher>,
    deny: Option<Matcher>,
}

impl Rule {
    /// Whether the client of `ctx` is allowed, and whether denied.
    fn verdict(&self, ctx: &Context<'_>) -> (bool, bool) {
        (
            self.allow.as_ref().is_none_or(|m| m.matches(ctx)),
            self.deny.as_ref().is_some_and(|m| m.matches(ctx)),
        )
    }
}

/// `fence`, compiled: each endpoint's rule (its own, else its region's).
#[derive(Debug, Clone)]
pub(crate) struct FenceStage {
    rule_of: Vec<Option<u16>>,
    rules: Vec<Rule>,
    uses_geo: bool,
    uses_asn: bool,
    cidr_bits: u8,
}

impl FenceStage {
    pub fn new(rules: &[FenceRule], pool: &[Endpoint], table: &Table) -> FenceStage {
        let compiled: Vec<Rule> = rules
            .iter()
            .map(|r| Rule {
                target: r.target.clone(),
                allow: r.allow.as_ref().map(Matcher::new),
                deny: r.deny.as_ref().map(Matcher::new),
            })
            .collect();
        let rule_of = pool
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let by_id = rules.iter().position(|r| r.target == e.id);
                let region = &table.region_names[usize::from(table.region[i])];
                let by_region = rules.iter().position(|r| r.target == *region);
                by_id.or(by_region).map(|p| p as u16)
            })
            .collect();
        let matchers = || {
            compiled
                .iter()
                .flat_map(|r| r.allow.iter().chain(r.deny.iter()))
        };
        FenceStage {
            rule_of,
            uses_geo: matchers().any(Matcher::uses_geo),
            uses_asn: matchers().any(|m| !m.asns.is_empty()),
            cidr_bits: matchers()
                .flat_map(|m| m.cidrs.iter().map(|n| n.prefix_len()))
                .max()
                .unwrap_or(0),
            rules: compiled,
        }
    }

    pub fn uses_location(&self) -> bool {
        self.uses_geo || self.uses_asn
    }

    /// Whether the rules read only the client's place (no ASN, no CIDR),
    /// so a client class can hold their verdicts.
    pub fn classifiable(&self) -> bool {
        !self.uses_asn
            && self
                .rules
                .iter()
                .flat_map(|r| r.allow.iter().chain(r.deny.iter()))
                .all(|m| m.cidrs.is_empty())
    }

    /// The rules' matchers, for a classifier's identity.
    pub fn rules_text(&self) -> String {
        let m: Vec<_> = self.rules.iter().map(|r| (&r.allow, &r.deny)).collect();
        format!("{m:?}")
    }

    /// Each rule's (allowed, denied) for the client of `ctx`.
    pub fn verdicts(&self, ctx: &Context<'_>) -> Box<[(bool, bool)]> {
        self.rules.iter().map(|rule| rule.verdict(ctx)).collect()
    }

    pub fn apply(
        &self,
        pool: &[Endpoint],
        list: &mut Vec<Candidate>,
        ctx: &Context<'_>,
        key: Option<&StageKey>,
        fx: &mut Effects<'_>,
    ) {
        let mut evaluated = false;
        list.retain(|&c| {
            let Some(r) = self.rule_of[usize::from(c)] else {
                return true;
            };
            evaluated = true;
            let rule = &self.rules[usize::from(r)];
            let (allowed, denied) = match (ctx.location, key) {
                (None, Some(StageKey::Fence(v))) => v[usize::from(r)],
                _ => rule.verdict(ctx),
            };
            if !allowed || denied {
                fx.note(|| {
                    format!(
                        "dropped {} ({} {} by the fence of {})",
                        ep(pool, c).id,
                        describe_client(ctx),
                        if denied { "denied" } else { "not allowed" },
                        rule.target
                    )
                });
            }
            allowed && !denied
        });
        if evaluated {
            if self.uses_geo {
                if let Some(loc) = ctx.location {
                    fx.depends(loc.network_prefix);
                }
            }
            if self.uses_asn {
                fx.depends(ctx.client_prefix);
            }
            fx.depends(self.cidr_bits);
        }
    }
}

fn describe_client(ctx: &Context<'_>) -> String {
    let net = ctx.client.map(|ip| format!("{ip}/{}", ctx.client_prefix));
    match (ctx.location.filter(|l| l.is_known()), net) {
        (Some(loc), Some(net)) => format!("client {loc}, {net}"),
        (Some(loc), None) => format!("client {loc}"),
        (None, Some(net)) => format!("client {net}"),
        (None, None) => "unknown client".to_string(),
    }
}

/// `geo`, compiled: region names as indices.
#[derive(Debug, Clone)]
pub(crate) struct GeoStage {
    subdivisions: Vec<((Code, Code), Vec<u16>)>,
    countries: Vec<(Code, Vec<u16>)>,
    continents: Vec<(Code, Vec<u16>)>,
    default: Vec<u16>,
}

impl GeoStage {
    pub fn new(map: &GeoMap, table: &Table) -> GeoStage {
        let regions = |names: &[String]| -> Vec<u16> {
            names.iter().filter_map(|n| table.region_index(n)).collect()
        };
        GeoStage {
            subdivisions: map
                .subdivisions
                .iter()
                .filter_map(|((c, s), r)| Some(((Code::new(c)?, Code::new(s)?), regions(r))))
                .collect(),
            countries: map
                .countries
                .iter()
                .filter_map(|(c, r)| Some((Code::new(c)?, regions(r))))
                .collect(),
            continents: map
                .continents
                .iter()
                .filter_map(|(c, r)| Some((Code::new(c)?, regions(r))))
                .collect(),
            default: regions(&map.default),
        }
    }

    /// The client's fallback chain: the regions of its subdivision, its
    /// country, its continent, and the default list, where mapped.
    fn chain(&self, loc: &Location) -> [(&'static str, Option<&[u16]>); 4] {
        let sub = loc
            .country
            .zip(loc.subdivision)
            .and_then(|k| lookup(&self.subdivisions, k));
        [
            ("subdivision", sub),
            (
                "country",
                loc.country.and_then(|k| lookup(&self.countries, k)),
            ),
            (
                "continent",
                loc.continent.and_then(|k| lookup(&self.continents, k)),
            ),
            ("default", Some(self.default.as_slice())),
        ]
    }

    /// The chain for a client at `loc` as one list, each region once (a
    /// region tried again later would find the same candidates): what the
    /// step decides, for a client class.
    pub fn regions(&self, loc: &Location) -> Box<[u16]> {
        let mut out: Vec<u16> = Vec::new();
        for (_, regions) in self.chain(loc) {
            for &r in regions.unwrap_or(&[]) {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
        out.into_boxed_slice()
    }

    /// Keeps the candidates of the first region, along the client's
    /// fallback chain (subdivision, country, continent, default), that has
    /// any; with none anywhere, the list is kept as it is.
    pub fn apply(
        &self,
        table: &Table,
        list: &mut Vec<Candidate>,
        ctx: &Context<'_>,
        key: Option<&StageKey>,
        fx: &mut Effects<'_>,
    ) {
        if let (None, Some(StageKey::Regions(regions))) = (ctx.location, key) {
            let tried = regions.iter().map(|&r| ("the client's class", r));
            match keep_first_region(table, list, tried) {
                Some((_, r)) => fx.note(|| {
                    let name = &table.region_names[usize::from(r)];
                    format!("the client's class: region {name}")
                }),
                None => fx.note(|| {
                    "the client's class: no mapped region has candidates, all kept".into()
                }),
            }
            return;
        }
        let loc = ctx.location.copied().unwrap_or_default();
        if let Some(l) = ctx.location {
            fx.depends(l.network_prefix);
        }
        let chain = self.chain(&loc);
        let tried = chain
            .iter()
            .flat_map(|&(level, regions)| regions.unwrap_or(&[]).iter().map(move |&r| (level, r)));
        match keep_first_region(table, list, tried) {
            Some((level, r)) => fx.note(|| {
                let name = &table.region_names[usize::from(r)];
                format!("{}: {level} rule, region {name}", describe_client(ctx))
            }),
            None => fx.note(|| {
                format!(
                    "{}: no mapped region has candidates, all kept",
                    describe_client(ctx)
                )
            }),
        }
    }
}

/// Keeps the candidates of the first region in `tried` that has any, and
/// says which (with the rule that named it); `None`, the list untouched,
/// when none has.
fn keep_first_region<'l>(
    table: &Table,
    list: &mut Vec<Candidate>,
    tried: impl IntoIterator<Item = (&'l str, u16)>,
) -> Option<(&'l str, u16)> {
    let in_region = |c: Candidate, r: u16| table.region[usize::from(c)] == r;
    let (level, r) = tried
        .into_iter()
        .find(|&(_, r)| list.iter().any(|&c| in_region(c, r)))?;
    list.retain(|&c| in_region(c, r));
    Some((level, r))
}

/// The regions mapped to `key`.
fn lookup<K: PartialEq>(map: &[(K, Vec<u16>)], key: K) -> Option<&[u16]> {
    map.iter()
        .find(|(k, _)| *k == key)
        .map(|(_, r)| r.as_slice())
}
