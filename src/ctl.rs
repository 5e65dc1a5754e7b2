//! `meridian ctl`: a client of the REST API (`/v1`) for people and
//! scripts.
//!
//! Tables by default, `-o json` or `-o yaml` for machines. Exit codes a
//! script can use:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | the node could not be reached, or failed (5xx, no quorum) |
//! | 2 | bad command line |
//! | 3 | not found (404) |
//! | 4 | conflict or stale `--if-match` (409, 412) |
//! | 5 | invalid request (400, 413, 415) |
//! | 6 | no credential, or not allowed (401, 403) |
//! | 78 | a local file (spec, TLS) is unreadable |

use std::process::ExitCode;
use std::time::Duration;

use meridian_consensus::tls;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::cli::{CtlArgs, CtlCommand, CtlKind, Output, TokenAction};

/// What went wrong, and the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// The exit code for an HTTP status.
fn code_for(status: StatusCode) -> u8 {
    match status.as_u16() {
        404 => 3,
        409 | 412 => 4,
        400 | 413 | 415 | 422 => 5,
        401 | 403 => 6,
        _ => 1,
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        if_match: Option<&str>,
    ) -> Result<(StatusCode, Value), Failure> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(90));
        if let Some((ct, bytes)) = body {
            req = req.header("content-type", ct).body(bytes);
        }
        if let Some(tag) = if_match {
            req = req.header("if-match", tag);
        }
        let resp = req.send().await.map_err(|e| {
            Failure::new(1, crate::cluster::unreachable(&self.base, &e).to_string())
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Failure::new(1, format!("reading the response: {e}")))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            json!({"error": {"code": "http", "message": String::from_utf8_lossy(&bytes).trim()}})
        });
        if status.is_success() {
            return Ok((status, value));
        }
        let e = &value["error"];
        let mut message = format!(
            "{} ({}): {}",
            e["code"].as_str().unwrap_or("error"),
            status.as_u16(),
            e["message"].as_str().unwrap_or("")
        );
        if let Some(f) = e["field"].as_str() {
            message.push_str(&format!("\n  field: {f}"));
        }
        Err(Failure::new(code_for(status), message))
    }

    async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.send(Method::GET, path, None, None)
            .await
            .map(|(_, v)| v)
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Value, Failure> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.send(method, path, Some(("application/json", bytes)), if_match)
            .await
            .map(|(_, v)| v)
    }
}

/// A path segment, percent-encoded where it must be.
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn run(args: CtlArgs) -> ExitCode {
    let server = match args
        .server
        .clone()
        .or_else(|| std::env::var("MERIDIAN_SERVER").ok())
    {
        Some(s) => s,
        None => {
            eprintln!("meridian: which node? Give --server URL or set MERIDIAN_SERVER");
            return ExitCode::from(2);
        }
    };
    let target = crate::cli::Target {
        config: None,
        api: None,
        token_file: args.token_file.clone(),
        ca: args.ca.clone(),
        cert: args.cert.clone(),
        key: args.key.clone(),
    };
    let (identity, file_token) = match crate::cluster::credentials(&target, None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("meridian: {e}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let token = args.token.clone().or(file_token);
    let base = if server.contains("://") {
        server.trim_end_matches('/').to_string()
    } else if identity.is_some() {
        format!("https://{server}")
    } else {
        format!("http://{server}")
    };
    let client = Client {
        http: tls::http_client(identity.as_ref(), token.as_deref()),
        base,
    };
    let runtime = match crate::cluster::client_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(command(&client, args.output, args.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("meridian: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn command(c: &Client, output: Output, cmd: CtlCommand) -> Result<(), Failure> {
    match cmd {
        CtlCommand::Get { kind, names } => get(c, output, kind, &names).await,
        CtlCommand::Apply {
            file,
            dry_run,
            if_match,
        } => {
            let bytes = std::fs::read(&file).map_err(|e| {
                Failure::new(
                    crate::EXIT_CONFIG,
                    format!("cannot read {}: {e}", file.display()),
                )
            })?;
            let path = if dry_run {
                "/v1/apply?dry_run=true"
            } else {
                "/v1/apply"
            };
            let (_, v) = c
                .send(
                    Method::POST,
                    path,
                    Some(("application/yaml", bytes)),
                    if_match.as_deref(),
                )
                .await?;
            if output != Output::Table {
                return print(output, &v);
            }
            let d = &v["diff"];
            let list = |k: &str| d[k].as_array().cloned().unwrap_or_default();
            let (added, changed, removed) = (list("added"), list("changed"), list("removed"));
            for (sign, items) in [("+", &added), ("~", &changed), ("-", &removed)] {
                for i in items {
                    out!("{sign} {}", i.as_str().unwrap_or_default());
                }
            }
            let n = added.len() + changed.len() + removed.len();
            if dry_run {
                out!(
                    "dry run: {n} change(s) would apply; nothing changed (version {})",
                    v["version"]
                );
            } else {
                out!("applied {n} change(s): state version {}", v["version"]);
            }
            Ok(())
        }
        CtlCommand::Put {
            kind,
            names,
            file,
            if_match,
        } => {
            if matches!(
                kind,
                CtlKind::Spec
                    | CtlKind::Zones
                    | CtlKind::Pools
                    | CtlKind::Regions
                    | CtlKind::Records
                    | CtlKind::Endpoints
            ) {
                return Err(Failure::new(
                    2,
                    "put takes one resource (pool, endpoint, record, ...); use apply for the whole spec",
                ));
            }
            let path = resource_path(kind, &names)?;
            let text = std::fs::read_to_string(&file).map_err(|e| {
                Failure::new(
                    crate::EXIT_CONFIG,
                    format!("cannot read {}: {e}", file.display()),
                )
            })?;
            let body: Value = serde_yaml::from_str(&text).map_err(|e| {
                Failure::new(
                    crate::EXIT_CONFIG,
                    format!("{} is not YAML or JSON: {e}", file.display()),
                )
            })?;
            let v = c
                .json(Method::PUT, &path, &body, if_match.as_deref())
                .await?;
            done(output, &v, &format!("put {}", names.join(" ")))
        }
        CtlCommand::Delete { kind, names } => {
            let path = resource_path(kind, &names)?;
            let v = c.send(Method::DELETE, &path, None, None).await?.1;
            done(output, &v, &format!("deleted {}", names.join(" ")))
        }
        CtlCommand::SetWeight {
            pool,
            endpoint,
            weight,
        } => patch(c, output, &pool, &endpoint, json!({ "weight": weight })).await,
        CtlCommand::Drain { pool, endpoint } => {
            patch(c, output, &pool, &endpoint, json!({"state": "drained"})).await
        }
        CtlCommand::Enable { pool, endpoint } => {
            patch(c, output, &pool, &endpoint, json!({"state": "enabled"})).await
        }
        CtlCommand::Disable { pool, endpoint } => {
            patch(c, output, &pool, &endpoint, json!({"state": "disabled"})).await
        }
        CtlCommand::Health => {
            let v = c.get("/v1/health").await?;
            if output != Output::Table {
                return print(output, &v);
            }
            let view: meridian_probes::health::HealthView = serde_json::from_value(v)
                .map_err(|e| Failure::new(1, format!("unexpected response: {e}")))?;
            crate::cluster::print_health(&view);
            Ok(())
        }
        CtlCommand::Explain {
            name,
            rtype,
            client,
        } => {
            let mut path = format!("/v1/explain?name={}&type={}", seg(&name), seg(&rtype));
            if let Some(cl) = client {
                path.push_str(&format!("&client={}", seg(&cl)));
            }
            let v = c.get(&path).await?;
            if output != Output::Table {
                return print(output, &v);
            }
            print_explanation(&v);
            Ok(())
        }
        CtlCommand::Cluster => {
            let v = c.get("/v1/cluster").await?;
            if output != Output::Table {
                return print(output, &v);
            }
            out!(
                "node {} is {} (term {}); leader: {}; version {}; stale {} ms",
                v["node"],
                v["role"].as_str().unwrap_or("?"),
                v["term"],
                v["leader"],
                v["version"],
                v["stale_ms"]
            );
            out!("{:<6} {:<24} {:<6} {:>12}", "ID", "ADDRESS", "VOTER", "LAG");
            if let Some(m) = v["members"].as_object() {
                for (id, mem) in m {
                    let lag = v["lag_entries"][id]
                        .as_u64()
                        .map_or("-".to_string(), |l| format!("{l} entries"));
                    out!(
                        "{:<6} {:<24} {:<6} {:>12}",
                        id,
                        mem["addr"].as_str().unwrap_or(""),
                        mem["voter"].to_string(),
                        lag
                    );
                }
            }
            if let Some(d) = v["diverged"].as_str() {
                out!("DIVERGED: {d}");
            }
            Ok(())
        }
        CtlCommand::Audit { limit, after } => {
            let mut path = format!("/v1/audit?limit={limit}");
            if let Some(a) = after {
                path.push_str(&format!("&after={a}"));
            }
            let v = c.get(&path).await?;
            if output != Output::Table {
                return print(output, &v);
            }
            out!(
                "{:>5} {:<24} {:<28} {:>7} {:>7}  ACTION",
                "SEQ",
                "TIME (UTC)",
                "ACTOR",
                "BEFORE",
                "AFTER"
            );
            for e in v["entries"].as_array().into_iter().flatten() {
                out!(
                    "{:>5} {:<24} {:<28} {:>7} {:>7}  {}",
                    e["seq"].to_string(),
                    utc(e["at_ms"].as_u64().unwrap_or(0)),
                    printable(e["actor"].as_str().unwrap_or("")),
                    e["before"].to_string(),
                    e["after"].to_string(),
                    printable(e["action"].as_str().unwrap_or(""))
                );
            }
            Ok(())
        }
        CtlCommand::Token { action } => token(c, output, action).await,
    }
}

async fn patch(
    c: &Client,
    output: Output,
    pool: &str,
    endpoint: &str,
    body: Value,
) -> Result<(), Failure> {
    let path = format!("/v1/pools/{}/endpoints/{}", seg(pool), seg(endpoint));
    let v = c.json(Method::PATCH, &path, &body, None).await?;
    done(output, &v, &format!("{pool}/{endpoint}: {body}"))
}

fn done(output: Output, v: &Value, what: &str) -> Result<(), Failure> {
    if output != Output::Table {
        return print(output, v);
    }
    out!("{what}: state version {}", v["version"]);
    Ok(())
}

async fn token(c: &Client, output: Output, action: TokenAction) -> Result<(), Failure> {
    match action {
        TokenAction::Create {
            scope,
            regions,
            description,
        } => {
            let body = json!({"scope": scope, "regions": regions, "description": description});
            let v = c.json(Method::POST, "/v1/tokens", &body, None).await?;
            if output != Output::Table {
                return print(output, &v);
            }
            eprintln!(
                "created token {} ({}); it is shown once, here:",
                v["id"].as_str().unwrap_or(""),
                v["scope"].as_str().unwrap_or("")
            );
            out!("{}", v["token"].as_str().unwrap_or(""));
            Ok(())
        }
        TokenAction::List => {
            let v = c.get("/v1/tokens").await?;
            if output != Output::Table {
                return print(output, &v);
            }
            out!(
                "{:<14} {:<7} {:<6} {:<20} DESCRIPTION",
                "ID",
                "SCOPE",
                "SOURCE",
                "REGIONS"
            );
            for t in v["tokens"].as_array().into_iter().flatten() {
                let regions = strings(&t["regions"]);
                out!(
                    "{:<14} {:<7} {:<6} {:<20} {}",
                    t["id"].as_str().unwrap_or(""),
                    t["scope"].as_str().unwrap_or(""),
                    t["source"].as_str().unwrap_or(""),
                    if regions.is_empty() {
                        "-".to_string()
                    } else {
                        regions.join(",")
                    },
                    printable(t["description"].as_str().unwrap_or(""))
                );
            }
            Ok(())
        }
        TokenAction::Revoke { id } => {
            let v = c
                .send(
                    Method::DELETE,
                    &format!("/v1/tokens/{}", seg(&id)),
                    None,
                    None,
                )
                .await?
                .1;
            done(output, &v, &format!("revoked token {id}"))
        }
    }
}

/// The API path of a resource named on the command line.
fn resource_path(kind: CtlKind, names: &[String]) -> Result<String, Failure> {
    let want = |n: usize, usage: &str| {
        if names.len() == n {
            Ok(())
        } else {
            Err(Failure::new(2, format!("expected {usage}")))
        }
    };
    let s: Vec<String> = names.iter().map(|n| seg(n)).collect();
    Ok(match kind {
        CtlKind::Zone => {
            want(1, "ZONE")?;
            format!("/v1/zones/{}", s[0])
        }
        CtlKind::Record => {
            want(3, "ZONE NAME TYPE")?;
            format!("/v1/zones/{}/records/{}/{}", s[0], s[1], s[2])
        }
        CtlKind::Steered => {
            want(3, "ZONE NAME TYPE")?;
            format!("/v1/zones/{}/steered/{}/{}", s[0], s[1], s[2])
        }
        CtlKind::Pool => {
            want(1, "POOL")?;
            format!("/v1/pools/{}", s[0])
        }
        CtlKind::Endpoint => {
            want(2, "POOL ENDPOINT")?;
            format!("/v1/pools/{}/endpoints/{}", s[0], s[1])
        }
        CtlKind::Check => {
            want(1, "POOL")?;
            format!("/v1/pools/{}/check", s[0])
        }
        CtlKind::Region => {
            want(1, "REGION")?;
            format!("/v1/regions/{}", s[0])
        }
        CtlKind::Spec => {
            want(0, "no names")?;
            "/v1/spec".into()
        }
        CtlKind::Zones => {
            want(0, "no names")?;
            "/v1/zones".into()
        }
        CtlKind::Pools => {
            want(0, "no names")?;
            "/v1/pools".into()
        }
        CtlKind::Regions => {
            want(0, "no names")?;
            "/v1/regions".into()
        }
        CtlKind::Records => {
            want(1, "ZONE")?;
            format!("/v1/zones/{}/records", s[0])
        }
        CtlKind::Endpoints => {
            want(1, "POOL")?;
            format!("/v1/pools/{}/endpoints", s[0])
        }
    })
}

async fn get(c: &Client, output: Output, kind: CtlKind, names: &[String]) -> Result<(), Failure> {
    let path = resource_path(kind, names)?;
    let v = c.get(&path).await?;
    if output != Output::Table {
        return print(output, &v);
    }
    match kind {
        CtlKind::Pools => {
            out!("{:<20} {:>9} {:<8}", "POOL", "ENDPOINTS", "CHECK");
            for (name, p) in v["pools"].as_object().into_iter().flatten() {
                out!(
                    "{:<20} {:>9} {:<8}",
                    name,
                    p["endpoints"].as_array().map_or(0, Vec::len),
                    p["check"]["kind"].as_str().unwrap_or("-")
                );
            }
        }
        CtlKind::Endpoints => endpoint_table(&names[0], &v["endpoints"]),
        CtlKind::Pool => endpoint_table(&names[0], &v["endpoints"]),
        CtlKind::Zones => {
            out!("{:<32} {:>7} {:>7}", "ZONE", "RECORDS", "STEERED");
            for (name, z) in v["zones"].as_object().into_iter().flatten() {
                out!(
                    "{:<32} {:>7} {:>7}",
                    name,
                    z["records"].as_array().map_or(0, Vec::len),
                    z["steered"].as_array().map_or(0, Vec::len)
                );
            }
        }
        CtlKind::Records => {
            out!("{:<36} {:<6} {:>7}  VALUES", "NAME", "TYPE", "TTL");
            for r in v["records"].as_array().into_iter().flatten() {
                let values = strings(&r["values"]);
                out!(
                    "{:<36} {:<6} {:>7}  {}",
                    r["name"].as_str().unwrap_or(""),
                    r["type"].as_str().unwrap_or(""),
                    r["ttl"].to_string(),
                    printable(&values.join(" | "))
                );
            }
        }
        CtlKind::Regions => {
            out!("{:<20} {:>9} {:>9}", "REGION", "LAT", "LON");
            for (name, r) in v["regions"].as_object().into_iter().flatten() {
                out!(
                    "{:<20} {:>9} {:>9}",
                    name,
                    r["lat"].as_f64().map_or("-".into(), |v| v.to_string()),
                    r["lon"].as_f64().map_or("-".into(), |v| v.to_string())
                );
            }
        }
        // one resource: its YAML, as `apply` takes it
        _ => return print(Output::Yaml, &v),
    }
    Ok(())
}

fn endpoint_table(pool: &str, list: &Value) {
    out!(
        "{:<12} {:<16} {:<28} {:<12} {:>6} {:>8} {:<9}",
        "POOL",
        "ENDPOINT",
        "ADDRESS",
        "REGION",
        "WEIGHT",
        "PRIORITY",
        "STATE"
    );
    for e in list.as_array().into_iter().flatten() {
        out!(
            "{:<12} {:<16} {:<28} {:<12} {:>6} {:>8} {:<9}",
            pool,
            e["id"].as_str().unwrap_or(""),
            e["address"].as_str().unwrap_or(""),
            e["region"].as_str().unwrap_or(""),
            e["weight"].to_string(),
            e["priority"].to_string(),
            e["state"].as_str().unwrap_or("")
        );
    }
}

fn print(output: Output, v: &Value) -> Result<(), Failure> {
    let text = match output {
        Output::Yaml => serde_yaml::to_string(v).unwrap_or_default(),
        _ => serde_json::to_string_pretty(v).unwrap_or_default(),
    };
    out!("{}", text.trim_end());
    Ok(())
}

/// `explain`'s answer, each value on its own line: record data is
/// anyone's with a write token, so none of it may break a line or carry
/// terminal escapes.
fn print_explanation(v: &Value) {
    let text = |k: &Value| printable(k.as_str().unwrap_or_default());
    out!(
        "{} {} for {}",
        text(&v["name"]),
        text(&v["type"]),
        v["client"]
            .as_str()
            .map_or("no client".to_string(), |c| format!(
                "client {}",
                printable(c)
            ))
    );
    out!(
        "location: {}",
        v["location"].as_str().map_or(
            "unknown (no GeoIP database, or no client)".to_string(),
            printable
        )
    );
    match v["steering"].as_object() {
        Some(st) => {
            out!(
                "candidates: {}",
                printable(&strings(&st["candidates"]).join(", "))
            );
            for (i, step) in st["steps"].as_array().into_iter().flatten().enumerate() {
                let kept = strings(&step["kept"]);
                let kept = if kept.is_empty() {
                    "(none)".to_string()
                } else {
                    printable(&kept.join(", "))
                };
                out!("{:>3}. {:<17} -> {kept}", i + 1, text(&step["step"]));
                for n in strings(&step["notes"]) {
                    out!("{:>24}{}", "", printable(n));
                }
            }
        }
        None => out!("not a steered name: static data"),
    }
    out!("rcode: {}", text(&v["rcode"]));
    for a in strings(&v["answers"]) {
        out!("answer: {}", printable(a));
    }
    if let Some(scope) = v["scope"].as_u64() {
        out!("ECS scope: /{scope}");
    }
}

/// The strings of a JSON list (none if it is not one).
fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// Text from the server, without terminal escapes, line breaks or
/// bidirectional overrides (which reorder what the terminal shows).
fn printable(s: &str) -> String {
    use meridian_config::zone::rules::unprintable;
    s.chars()
        .map(|c| if unprintable(c) { '?' } else { c })
        .collect()
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS`.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // days since 1970-01-01 to a Gregorian date, by 400-year eras
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_796_023_706_093), "2026-11-30 07:28:26");
    }

    #[test]
    fn server_text_cannot_move_the_terminal() {
        assert_eq!(printable("a\r\nb\u{1b}[2J\u{202E}c"), "a??b?[2J?c");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("www.example.com."), "www.example.com.");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
    }
}
