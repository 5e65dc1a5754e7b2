use super::*;

/// A valid zone to build cases on; `{extra_records}`, `{extra_steered}` and
/// `{extra_pools}` are filled per case.
const BASE: &str = r#"zones:
  glb.example.com:
    ttl: 300
    soa:
      rname: hostmaster.example.com.
      minimum: 60
    ns:
      - name: ns1
        addresses: [192.0.2.53]
      - name: ns.other.net.
    records:
      - name: www
        type: A
        values: [192.0.2.10, 192.0.2.11]
      - name: "@"
        type: MX
        value: "10 mail"
      - name: mail
        type: A
        value: 192.0.2.25{extra_records}
    steered:
      - name: app
        type: A
        ttl: 20
        pool: web
        steps: [health, priority, weighted, {first: 2}]
        on_all_down: {sorry: [192.0.2.99]}{extra_steered}
pools:
  web:
    endpoints:
      - {id: eu-1, address: 192.0.2.1, region: eu-west, lat: 53.3, lon: -6.2, weight: 10}
      - {id: us-1, address: 198.51.100.1, region: us-east, priority: 2}{extra_pools}
"#;

fn spec(records: &str, steered: &str, pools: &str) -> String {
    BASE.replace("{extra_records}", records)
        .replace("{extra_steered}", steered)
        .replace("{extra_pools}", pools)
}

/// Parses `text` and checks that each expected fragment appears in the
/// error output, and that there are exactly as many errors as fragments.
fn check_errors(text: &str, expect: &[&str]) {
    let err = parse("zones.yaml", text).expect_err("should fail");
    let out = err.to_string();
    for e in expect {
        assert!(out.contains(e), "missing {e:?} in:\n{out}");
    }
    assert_eq!(err.0.len(), expect.len(), "error count, got:\n{out}");
}

#[test]
fn base_spec_is_valid() {
    let s = parse("zones.yaml", &spec("", "", "")).unwrap();
    let z = &s.zones[0];
    assert_eq!(z.name.as_str(), "glb.example.com.");
    assert_eq!(z.soa.mname.as_str(), "ns1.glb.example.com.");
    assert_eq!(z.soa.minimum, 60);
    assert_eq!(z.soa.ttl, 300);
    assert_eq!(z.ns[1].name.as_str(), "ns.other.net.");
    assert_eq!(z.records[0].data.len(), 2);
    assert_eq!(z.records[0].ttl, 300);
    assert_eq!(
        z.records[1].data,
        vec![RecordData::Mx {
            preference: 10,
            exchange: DomainName::parse("mail.glb.example.com.").unwrap()
        }]
    );
    let st = &z.steered[0];
    assert_eq!(
        st.steps,
        vec![
            Step::Health,
            Step::Priority,
            Step::Weighted { sticky: false },
            Step::First(2)
        ]
    );
    assert_eq!(
        st.on_all_down,
        OnAllDown::Sorry(vec![EndpointAddress::Ip("192.0.2.99".parse().unwrap())])
    );
    let web = &s.pools["web"];
    assert_eq!(web.endpoints[0].weight, 10);
    assert_eq!(web.endpoints[1].weight, 1);
    assert_eq!(web.endpoints[1].priority, 2);
    assert_eq!(web.endpoints[1].state, AdminState::Enabled);
}

#[test]
fn the_issue_example_message() {
    let text = spec(
        "",
        "",
        "\n      - {id: ap-1, address: 203.0.113.1, region: ap, weight: heavy}",
    );
    check_errors(
        &text,
        &["zones.yaml:33:62: pools.web.endpoints[2].weight: expected an integer 0..=65535, got string \"heavy\""],
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let text = spec(
        "\n      - name: bad\n        type: A\n        value: 2001:db8::1\n      - {name: x, type: TXT, value: hi, colour: red}",
        "\n      - {name: gone, type: A, pool: nope}",
        "\n      - {id: eu-1, address: 192.0.2.7, region: eu-west}\n      - {id: ap-1, address: 203.0.113.1, region: ap, weight: -3}",
    );
    check_errors(
        &text,
        &[
            "records[3].value: expected an IPv4 address, got \"2001:db8::1\"",
            "records[4].colour: unknown field `colour`",
            "steered[1].pool: no pool named \"nope\"",
            "pools.web.endpoints[2].id: duplicate endpoint id \"eu-1\"",
            "pools.web.endpoints[3].weight: expected an integer 0..=65535, got number -3",
        ],
    );
}

#[test]
fn unknown_keys() {
    check_errors(
        &format!("{}extra: 1\n", spec("", "", "")),
        &["extra: unknown field `extra`"],
    );
    check_errors(
        &spec(
            "",
            "",
            "\n      - {id: x, address: 192.0.2.8, region: r, wieght: 3}",
        ),
        &["pools.web.endpoints[2].wieght: unknown field `wieght`"],
    );
}

#[test]
fn duplicate_names() {
    // the same key twice in one map
    let text = spec("", "", "").replace("pools:\n", "pools:\n  web:\n    endpoints: []\n");
    check_errors(&text, &["pools.web: duplicate key (first defined at line"]);
    // the same zone in another case
    let text = format!(
        "{}\n",
        spec("", "", "").replace(
            "pools:",
            "  GLB.example.com:\n    soa: {rname: h.example.com.}\n    ns: [{name: ns.other.net.}]\npools:"
        )
    );
    check_errors(&text, &["is defined twice"]);
    // two record sets of one name and type
    check_errors(
        &spec("\n      - {name: www, type: A, value: 192.0.2.12}", "", ""),
        &["duplicate A record set at www.glb.example.com."],
    );
    // a steered record on a name and type that has static data
    check_errors(
        &spec("", "\n      - {name: www, type: A, pool: web}", ""),
        &["A at www.glb.example.com. is already defined at"],
    );
}

#[test]
fn records_outside_their_zone() {
    check_errors(
        &spec(
            "\n      - {name: www.example.org., type: A, value: 192.0.2.1}",
            "",
            "",
        ),
        &["records[3].name: www.example.org. is outside its zone glb.example.com."],
    );
    check_errors(
        &spec(
            "",
            "\n      - {name: app.example.com., type: A, pool: web}",
            "",
        ),
        &["steered[1].name: app.example.com. is outside its zone"],
    );
}

#[test]
fn cname_beside_other_data() {
    check_errors(
        &spec(
            "\n      - {name: www, type: CNAME, value: other.example.net.}",
            "",
            "",
        ),
        &["a CNAME cannot stand beside other data at www.glb.example.com. (also A)"],
    );
    check_errors(
        &spec(
            "\n      - {name: \"@\", type: CNAME, value: other.example.net.}",
            "",
            "",
        ),
        &["a CNAME cannot stand beside other data at glb.example.com. (also MX)"],
    );
    check_errors(
        &spec(
            "\n      - {name: app, type: CNAME, value: other.example.net.}",
            "",
            "",
        ),
        &["a CNAME cannot stand beside other data at app.glb.example.com. (also A)"],
    );
    check_errors(
        &spec(
            "\n      - {name: c, type: CNAME, values: [a.example., b.example.]}",
            "",
            "",
        ),
        &["a CNAME has exactly one value"],
    );
}

#[test]
fn address_family_must_match_the_type() {
    check_errors(
        &spec("\n      - {name: v6, type: AAAA, value: 192.0.2.1}", "", ""),
        &["expected an IPv6 address, got \"192.0.2.1\""],
    );
    check_errors(
        &spec("", "\n      - {name: app, type: AAAA, pool: web}", ""),
        &[
            "a steered AAAA record needs IPv6 addresses, but endpoint \"eu-1\"",
            "a steered AAAA record needs IPv6 addresses, but endpoint \"us-1\"",
        ],
    );
    check_errors(
        &spec(
            "",
            "\n      - {name: v4, type: A, pool: web, on_all_down: {sorry: [\"2001:db8::1\"]}}",
            "",
        ),
        &["on_all_down.sorry[0]: a A record needs IPv4 addresses, got an IPv6 address"],
    );
}

#[test]
fn ttls_out_of_range() {
    check_errors(
        &spec(
            "\n      - {name: t, type: TXT, value: x, ttl: 2147483648}",
            "",
            "",
        ),
        &["records[3].ttl: expected a TTL in seconds 0..=2147483647, got number 2147483648"],
    );
    check_errors(
        &spec("", "\n      - {name: t, type: A, pool: web, ttl: -1}", ""),
        &["steered[1].ttl: expected a TTL in seconds 0..=2147483647, got number -1"],
    );
}

#[test]
fn bad_steps() {
    check_errors(
        &spec(
            "",
            "\n      - {name: s, type: A, pool: web, steps: [health, magic]}",
            "",
        ),
        &["steered[1].steps[1]: unknown step `magic`"],
    );
    check_errors(
        &spec(
            "",
            "\n      - {name: s, type: A, pool: web, steps: [{first: 0}]}",
            "",
        ),
        &["steered[1].steps[0]: first: expected a count 1..=1000, got number 0"],
    );
    check_errors(
        &spec(
            "",
            "\n      - {name: s, type: A, pool: web, on_all_down: panic}",
            "",
        ),
        &["unknown on_all_down `panic`"],
    );
}

#[test]
fn delegations_and_glue() {
    let ok = spec(
        "\n      - {name: sub, type: NS, values: [ns1.sub, ns.other.net.]}\n      - {name: ns1.sub, type: A, value: 192.0.2.60}",
        "",
        "",
    );
    let s = parse("zones.yaml", &ok).unwrap();
    assert_eq!(s.zones[0].records.len(), 5);
    check_errors(
        &spec(
            "\n      - {name: sub, type: NS, value: ns.other.net.}\n      - {name: www.sub, type: TXT, value: hidden}",
            "",
            "",
        ),
        &["www.sub.glb.example.com. is at or below the delegation sub.glb.example.com."],
    );
    check_errors(
        &spec(
            "\n      - {name: \"@\", type: NS, value: ns.other.net.}",
            "",
            "",
        ),
        &["apex NS records come from the zone's `ns` list"],
    );
    let no_glue = spec("", "", "").replace("        addresses: [192.0.2.53]\n", "");
    check_errors(
        &no_glue,
        &["ns1.glb.example.com. is inside the zone and needs glue"],
    );
    let stray_glue = spec("", "", "").replace(
        "      - name: ns.other.net.",
        "      - name: ns.other.net.\n        addresses: [192.0.2.54]",
    );
    check_errors(
        &stray_glue,
        &["glue addresses belong only to in-zone name servers"],
    );
}

#[test]
fn record_values_of_each_type() {
    let s = parse(
        "zones.yaml",
        &spec(
            "\n      - {name: \"@\", type: TXT, values: [\"v=spf1 -all\", 42]}\n      - {name: \"@\", type: CAA, value: '0 issue \"ca.example.net\"'}\n      - {name: _sip._tcp, type: SRV, value: 10 5 5060 sip}\n      - {name: v6, type: AAAA, value: \"2001:db8::1\"}\n      - {name: alias, type: CNAME, value: www}",
            "",
            "",
        ),
    )
    .unwrap();
    let r = &s.zones[0].records;
    assert_eq!(r[3].data[1], RecordData::Txt(vec!["42".into()]));
    assert_eq!(
        r[4].data[0],
        RecordData::Caa {
            critical: false,
            tag: "issue".into(),
            value: "ca.example.net".into()
        }
    );
    assert_eq!(
        r[5].data[0],
        RecordData::Srv {
            priority: 10,
            weight: 5,
            port: 5060,
            target: DomainName::parse("sip.glb.example.com.").unwrap()
        }
    );
    assert_eq!(
        r[7].data[0],
        RecordData::Cname(DomainName::parse("www.glb.example.com.").unwrap())
    );
    check_errors(
        &spec("\n      - {name: m, type: MX, value: mail}\n      - {name: s, type: SRV, value: 1 2 99999 t}", "", ""),
        &["expected \"PREFERENCE EXCHANGE\", got \"mail\"", "expected a port 0..=65535, got \"99999\""],
    );
}

#[test]
fn long_txt_is_split_into_character_strings() {
    let long = "x".repeat(600);
    let s = parse(
        "zones.yaml",
        &spec(
            &format!("\n      - {{name: t, type: TXT, value: {long}}}"),
            "",
            "",
        ),
    )
    .unwrap();
    let RecordData::Txt(parts) = &s.zones[0].records[3].data[0] else {
        panic!()
    };
    assert_eq!(
        parts.iter().map(String::len).collect::<Vec<_>>(),
        vec![255, 255, 90]
    );
}

#[test]
fn endpoint_checks() {
    check_errors(
        &spec("", "", "\n      - {id: bad, address: \"not an address\", region: r, lat: 91, lon: 0, cost: -1}"),
        &[
            "endpoints[2].address: expected an IP address or a host name",
            "endpoints[2].lat: expected a latitude -90..=90, got 91",
            "endpoints[2].cost: expected a cost >= 0, got -1",
        ],
    );
    check_errors(
        &spec("", "", "\n      - {id: x, address: 192.0.2.9, region: r, state: paused}"),
        &["endpoints[2].state: unknown variant `paused`, expected one of `enabled`, `drained`, `disabled`"],
    );
}

#[test]
fn syntax_errors_name_the_position() {
    let err = parse("zones.yaml", "zones:\n  a: [\n").unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert!(err.to_string().starts_with("zones.yaml:"), "{err}");
    assert!(err.to_string().contains("invalid YAML"), "{err}");
}

#[test]
fn empty_file_is_an_empty_spec() {
    let s = parse("zones.yaml", "").unwrap();
    assert!(s.zones.is_empty() && s.pools.is_empty());
}

/// The base spec with probe regions and a steered record using `steps`.
fn with_steps(steps: &str) -> String {
    format!(
        "{}regions:\n  eu-west: {{lat: 53.3, lon: -6.3}}\n  us-east: {{lat: 39.0, lon: -77.5}}\n",
        spec(
            "",
            &format!(
                "\n      - name: s\n        type: A\n        pool: web\n        steps: {steps}"
            ),
            ""
        )
    )
}

#[test]
fn location_steps_parse() {
    let s = parse(
        "zones.yaml",
        &with_steps(
            "[health, {fence: {eu-west: {allow: {continents: [eu], cidrs: [192.0.2.0/24]}}, us-1: {deny: {countries: [cn], asns: [64511], subdivisions: [us-ca]}}}}, {geo: {subdivisions: {US-CA: [us-east]}, countries: {IE: [eu-west, us-east]}, continents: {EU: [eu-west]}, default: [us-east]}}, nearest, latency, {cost: {margin_ms: 20}}, {weighted: {sticky: true}}, {first: 1}]",
        ),
    )
    .unwrap();
    assert_eq!(s.regions.len(), 2);
    let steps = &s.zones[0].steered[1].steps;
    let Step::Fence(rules) = &steps[1] else {
        panic!("{steps:?}")
    };
    assert_eq!(rules[0].target, "eu-west");
    assert_eq!(rules[0].allow.as_ref().unwrap().continents, ["EU"]);
    assert_eq!(
        rules[1].deny.as_ref().unwrap().subdivisions,
        [("US".to_string(), "CA".to_string())]
    );
    let Step::Geo(g) = &steps[2] else { panic!() };
    assert_eq!(
        g.countries,
        [(
            "IE".to_string(),
            vec!["eu-west".to_string(), "us-east".to_string()]
        )]
    );
    assert_eq!(g.default, ["us-east"]);
    assert_eq!(steps[3], Step::Nearest);
    assert_eq!(steps[5], Step::Cost(CostMargin::Ms(20.0)));
    assert_eq!(steps[6], Step::Weighted { sticky: true });
}

#[test]
fn location_step_errors() {
    check_errors(
        &with_steps("[{geo: {continents: {EUROPE: [eu-west], NA: [us-west]}, countries: {USA: [us-east]}}}]"),
        &[
            "steps[0].geo.countries.USA: expected a two-letter country code",
            "steps[0].geo.continents.EUROPE: expected a continent code",
            "steps[0].geo.continents.NA[0]: no endpoint of the pool is in region \"us-west\" (regions: eu-west, us-east)",
        ],
    );
    check_errors(
        &with_steps("[{fence: {mars: {allow: {cidrs: [192.0.2.1/24, nope]}}}}]"),
        &[
            "steps[0].fence.mars: no endpoint of the pool is in region \"mars\"",
            "fence.mars.allow.cidrs[0]: 192.0.2.1/24 has host bits set; did you mean 192.0.2.0/24?",
            "fence.mars.allow.cidrs[1]: expected a network like 192.0.2.0/24, got \"nope\"",
        ],
    );
    check_errors(
        &with_steps("[{cost: {}}]"),
        &["cost: give `margin_ms` or `margin_pct`"],
    );
    check_errors(
        &with_steps("[{fence: {eu-west: {}}}]"),
        &["a fence rule needs `allow` or `deny`"],
    );
    check_errors(
        &with_steps("[{geo: {colour: red}}]"),
        &["steps[0]: geo.colour: unknown field `colour`"],
    );
    check_errors(
        &with_steps("[{weighted: {sticky: maybe}}]"),
        &["weighted.sticky: expected a boolean"],
    );
    check_errors(
        &spec(
            "",
            "\n      - {name: s, type: A, pool: web, steps: [latency]}",
            "",
        ),
        &["`latency` needs probe regions"],
    );
}

#[test]
fn endpoint_bias_and_static_rtt() {
    let ok = format!(
        "{}regions:\n  eu-west: {{lat: 53.3, lon: -6.3}}\n",
        spec("", "", "\n      - {id: x, address: 192.0.2.9, region: eu-west, bias: -20, rtt_ms: {eu-west: 4.5}}")
    );
    let s = parse("zones.yaml", &ok).unwrap();
    let x = &s.pools["web"].endpoints[2];
    assert_eq!((x.bias, x.rtt_ms["eu-west"]), (-20, 4.5));
    check_errors(
        &spec(
            "",
            "",
            "\n      - {id: x, address: 192.0.2.9, region: r, bias: 120, rtt_ms: {nowhere: 3}}",
        ),
        &[
            "endpoints[2].bias: expected a bias -99..=99, got 120",
            "endpoints[2].rtt_ms.nowhere: no probe region named \"nowhere\"",
        ],
    );
}

/// The base spec with probe regions eu-west and us-east, and `check` as
/// pool web's check.
fn with_check(check: &str, endpoints: &str) -> String {
    format!(
        "{}regions:\n  eu-west: {{}}\n  us-east: {{}}\n",
        spec("", "", "").replace(
            "  web:\n    endpoints:",
            &format!("  web:\n    check: {check}\n    endpoints:{endpoints}"),
        )
    )
}

#[test]
fn checks_parse_with_defaults() {
    let s = parse(
        "zones.yaml",
        &with_check("{kind: https, path: /healthz, host: app.example, expect_status: [2xx, 301], interval: 5s, tls_verify: false, quorum: 50%}", ""),
    )
    .unwrap();
    let c = s.pools["web"].check.as_ref().unwrap();
    assert_eq!(
        (c.kind, c.port, c.path.as_str()),
        (CheckKind::Https, 443, "/healthz")
    );
    assert_eq!(c.expect_status, [(200, 299), (301, 301)]);
    assert_eq!(
        (c.interval_ms, c.timeout_ms, c.stale_after_ms),
        (5_000, 2_000, 15_000)
    );
    assert_eq!((c.rise, c.fall, c.quorum), (2, 3, 1));
    assert_eq!(c.regions, ["eu-west", "us-east"]);
    assert!(!c.tls_verify);
    assert!(c.user_agent.starts_with("Meridian-Probe/"));
}

#[test]
fn check_errors_name_the_field() {
    check_errors(
        &with_check("{kind: tcp, path: /x, interval: 500ms, timeout: 2s, rise: 0, regions: [eu-west, mars], quorum: 3}", ""),
        &[
            "pools.web.check.path: path is only for http and https checks",
            "pools.web.check.interval: expected an interval from 1s to 1h, got 500ms",
            "pools.web.check.timeout: expected a timeout from 100ms to the interval (500ms), got 2000ms",
            "pools.web.check.rise: expected a count 1..=100, got 0",
            "pools.web.check.regions[1]: no probe region named \"mars\"",
            "pools.web.check.quorum: expected a count of regions 1..=2",
        ],
    );
    // a tcp check without a port takes each endpoint's from check_address
    let ok =
        "\n      - {id: c, address: 192.0.2.3, region: eu-west, check_address: \"127.0.0.1:9000\"}";
    check_errors(
        &with_check("{kind: tcp}", ok),
        &[
            "pools.web.endpoints[1]: the pool's tcp check has no port, so endpoint \"eu-1\" needs a check_address with one",
            "pools.web.endpoints[2]: the pool's tcp check has no port, so endpoint \"us-1\" needs a check_address with one",
        ],
    );
    let s = parse(
        "zones.yaml",
        &with_check("{kind: tcp}", ok)
            .replace(
                "region: eu-west, lat: 53.3, lon: -6.2, weight: 10",
                "region: eu-west, check_address: \"127.0.0.1:81\"",
            )
            .replace(
                "region: us-east, priority: 2",
                "region: us-east, check_address: \"[::1]:82\"",
            ),
    )
    .unwrap();
    assert_eq!(s.pools["web"].check.as_ref().unwrap().port, 0);
}

#[test]
fn wildcards_only_as_a_whole_first_label() {
    let ok = spec(
        "\n      - {name: \"*.w\", type: A, value: 192.0.2.1}",
        "\n      - {name: \"*.lb\", type: A, pool: web}",
        "",
    );
    parse("zones.yaml", &ok).unwrap();
    check_errors(
        &spec(
            "\n      - {name: \"a*b\", type: A, value: 192.0.2.1}",
            "",
            "",
        ),
        &["records[3].name: \"a*b\": a wildcard is `*` as a whole label"],
    );
    check_errors(
        &spec(
            "\n      - {name: \"x.*.w\", type: A, value: 192.0.2.1}",
            "",
            "",
        ),
        &["records[3].name: a wildcard is `*` as the first label only"],
    );
    check_errors(
        &spec(
            "\n      - {name: \"*.w\", type: NS, value: ns.example.net.}",
            "",
            "",
        ),
        &["records[3].type: a wildcard cannot delegate"],
    );
}

#[test]
fn warnings_for_an_undelegated_child_and_a_steered_cname_left_many() {
    let text = spec(
        "",
        "\n      - {name: cdn, type: CNAME, pool: hosts, steps: [health]}",
        "\n  hosts:\n    endpoints:\n      - {id: a, address: a.example.net., region: r}\n      - {id: b, address: b.example.net., region: r}",
    )
    .replace(
        "pools:",
        "  child.glb.example.com:\n    soa: {rname: h.example.com.}\n    ns: [{name: ns.other.net.}]\npools:",
    );
    let s = parse("zones.yaml", &text).unwrap();
    let w: Vec<String> = warnings("zones.yaml", &text, &s)
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(w.len(), 3, "{w:#?}");
    // in file order
    assert!(
        w[0].contains("steered[1].on_all_down: with every host down, fail_open leaves all 2"),
        "{w:#?}"
    );
    assert!(
        w[1].contains("steered[1].steps: the steps can leave up to 2 hosts"),
        "{w:#?}"
    );
    assert!(w[2].contains("child.glb.example.com. is inside the zone glb.example.com. but that zone has no NS records"), "{w:#?}");
    // each on the line of its field
    assert!(w.iter().all(|l| !l.starts_with("zones.yaml:1:")), "{w:#?}");
    // delegated, cut to one, and failing closed: nothing to say
    let quiet = text
        .replace(
            "steps: [health]}",
            "steps: [health, {first: 1}], on_all_down: nodata}",
        )
        .replace(
            "value: 192.0.2.25",
            "value: 192.0.2.25\n      - {name: child, type: NS, value: ns.other.net.}",
        );
    let s = parse("zones.yaml", &quiet).unwrap();
    assert_eq!(warnings("zones.yaml", &quiet, &s), vec![]);
}
