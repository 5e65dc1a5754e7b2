//! serde structs that mirror the zone spec file, unknown keys rejected.

use std::collections::BTreeMap;

use serde::de::{Deserializer, Error as _};
use serde::Deserialize;
use serde_yaml::Value;

use super::{AdminState, CheckKind, RecordType, SteeredType};
use crate::values::{Count, Millis, Text, Ttl, Weight, U16, U32};
use crate::yaml::{describe, parse_value, tagged, Lenient, Seg};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneSpec {
    #[serde(default)]
    pub zones: BTreeMap<String, Lenient<Zone>>,
    #[serde(default)]
    pub pools: BTreeMap<String, Lenient<Pool>>,
    #[serde(default)]
    pub regions: BTreeMap<String, Lenient<Region>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub lat: Option<f64>,
    pub lon: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub ttl: Option<Ttl>,
    pub soa: Soa,
    pub ns: Vec<NameServer>,
    #[serde(default)]
    pub records: Vec<Lenient<Record>>,
    #[serde(default)]
    pub steered: Vec<Lenient<Steered>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Soa {
    pub mname: Option<String>,
    pub rname: String,
    pub refresh: Option<U32>,
    pub retry: Option<U32>,
    pub expire: Option<U32>,
    pub minimum: Option<U32>,
    pub ttl: Option<Ttl>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameServer {
    pub name: String,
    #[serde(default)]
    pub addresses: Vec<std::net::IpAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: RecordType,
    pub ttl: Option<Ttl>,
    #[serde(default)]
    pub value: Option<Text>,
    #[serde(default)]
    pub values: Vec<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Steered {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: SteeredType,
    pub ttl: Option<Ttl>,
    pub pool: String,
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub on_all_down: Option<OnAllDown>,
    pub mode: Option<super::SteeredMode>,
    pub http: Option<super::HttpMode>,
    pub proxy_host: Option<super::ProxyHost>,
}

#[derive(Debug)]
pub enum Step {
    Health,
    Priority,
    Weighted(Weighted),
    First(Count),
    Fence(BTreeMap<String, FenceRule>),
    Geo(GeoMap),
    Nearest,
    Latency,
    Cost(Cost),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Weighted {
    #[serde(default)]
    pub sticky: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FenceRule {
    pub allow: Option<ClientMatch>,
    pub deny: Option<ClientMatch>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ClientMatch {
    #[serde(default)]
    pub countries: Vec<String>,
    #[serde(default)]
    pub continents: Vec<String>,
    #[serde(default)]
    pub subdivisions: Vec<String>,
    #[serde(default)]
    pub asns: Vec<u32>,
    #[serde(default)]
    pub cidrs: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GeoMap {
    #[serde(default)]
    pub subdivisions: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub countries: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub continents: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub default: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cost {
    pub margin_ms: Option<f64>,
    pub margin_pct: Option<f64>,
}

const STEPS: &str =
    "`health`, `fence`, `geo`, `nearest`, `latency`, `cost`, `priority`, `weighted` or `first: N`";

/// Parses a step's argument, naming the step and the field inside it.
fn arg<T: serde::de::DeserializeOwned>(step: &str, v: Value) -> Result<T, String> {
    parse_value::<T>(v).map_err(|f| {
        let mut at = step.to_string();
        for seg in &f.segments {
            match seg {
                Seg::Key(k) => {
                    at.push('.');
                    at.push_str(k);
                }
                Seg::Index(i) => at.push_str(&format!("[{i}]")),
            }
        }
        format!("{at}: {}", f.message)
    })
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let (name, arg_value) = tagged(v).map_err(D::Error::custom)?;
        let no_arg = |step: Step| match &arg_value {
            None | Some(Value::Null) => Ok(step),
            Some(a) => Err(D::Error::custom(format!(
                "step `{name}` takes no argument, got {}",
                describe(a)
            ))),
        };
        let with_arg = |what: &str| {
            arg_value
                .clone()
                .ok_or_else(|| D::Error::custom(format!("step `{name}` needs {what}")))
        };
        match name.as_str() {
            "health" => no_arg(Step::Health),
            "priority" => no_arg(Step::Priority),
            "nearest" => no_arg(Step::Nearest),
            "latency" => no_arg(Step::Latency),
            "weighted" => match arg_value.clone() {
                None | Some(Value::Null) => Ok(Step::Weighted(Weighted::default())),
                Some(a) => arg("weighted", a)
                    .map(Step::Weighted)
                    .map_err(D::Error::custom),
            },
            "first" => arg("first", with_arg("a count: `first: 2`")?)
                .map(Step::First)
                .map_err(D::Error::custom),
            "fence" => arg(
                "fence",
                with_arg("rules: `fence: {eu-west: {allow: {continents: [EU]}}}`")?,
            )
            .map(Step::Fence)
            .map_err(D::Error::custom),
            "geo" => arg(
                "geo",
                with_arg("a map: `geo: {continents: {EU: [eu-west]}, default: [us-east]}`")?,
            )
            .map(Step::Geo)
            .map_err(D::Error::custom),
            "cost" => arg("cost", with_arg("a margin: `cost: {margin_ms: 20}`")?)
                .map(Step::Cost)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "unknown step `{other}`, expected {STEPS}"
            ))),
        }
    }
}

#[derive(Debug)]
pub enum OnAllDown {
    FailOpen,
    NoData,
    Sorry(Vec<Text>),
    HttpFallback,
}

impl<'de> Deserialize<'de> for OnAllDown {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let (name, arg) = tagged(v).map_err(D::Error::custom)?;
        match (name.as_str(), arg) {
            ("fail_open", None) => Ok(OnAllDown::FailOpen),
            ("nodata", None) => Ok(OnAllDown::NoData),
            ("http_fallback", None) => Ok(OnAllDown::HttpFallback),
            ("sorry", Some(a)) => parse_value::<Vec<Text>>(a)
                .map(OnAllDown::Sorry)
                .map_err(|f| D::Error::custom(format!("sorry: {}", f.message))),
            (other, _) => Err(D::Error::custom(format!(
                "unknown on_all_down `{other}`, expected `fail_open`, `nodata`, `http_fallback` or `sorry: [addresses]`"
            ))),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub endpoints: Vec<Lenient<Endpoint>>,
    pub check: Option<Lenient<Check>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub kind: CheckKind,
    pub port: Option<U16>,
    pub path: Option<String>,
    pub method: Option<String>,
    pub host: Option<String>,
    pub expect_status: Option<Vec<Text>>,
    pub body: Option<String>,
    pub user_agent: Option<String>,
    pub tls_verify: Option<bool>,
    pub interval: Option<Millis>,
    pub timeout: Option<Millis>,
    pub rise: Option<U16>,
    pub fall: Option<U16>,
    pub regions: Option<Vec<String>>,
    pub quorum: Option<Text>,
    pub stale_after: Option<Millis>,
    pub hold_down: Option<Millis>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub id: String,
    pub address: String,
    pub region: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub weight: Option<Weight>,
    pub cost: Option<f64>,
    pub priority: Option<U16>,
    #[serde(default)]
    pub state: AdminState,
    pub bias: Option<i64>,
    #[serde(default)]
    pub rtt_ms: BTreeMap<String, f64>,
    pub check_address: Option<String>,
    pub redirect_url: Option<String>,
    pub proxy_url: Option<String>,
}
