//! Unit tests of the SOL013 filters and selectors.

use serde_json::{Value, json};

use super::*;

fn machine() -> Value {
    json!({
        "resourceId": "r1",
        "description": "node-1",
        "groups": ["c1", "c2"],
        "elements": [{"name": "eth0", "speed": 10}, {"name": "eth1", "speed": 25}],
        "extensions": {
            "role": "master",
            "cpuCores": 16,
            "ip": null,
            "netboot": true,
            "createdAt": "2024-05-01T10:00:00Z"
        }
    })
}

fn m(filter: &str) -> bool {
    parse_filter(filter).expect("parses").matches(&machine())
}

#[test]
fn eq_and_neq() {
    assert!(m("(eq,description,node-1)"));
    assert!(!m("(eq,description,node-2)"));
    assert!(m("(neq,description,node-2)"));
    assert!(!m("(neq,description,node-1)"));
    // Absent attributes: eq fails, neq holds.
    assert!(!m("(eq,nothing,x)"));
    assert!(m("(neq,nothing,x)"));
}

#[test]
fn nested_paths_numbers_booleans_null() {
    assert!(m("(eq,extensions/role,master)"));
    assert!(m("(eq,extensions/cpuCores,16)"));
    assert!(m("(eq,extensions/cpuCores,16.0)"));
    assert!(!m("(eq,extensions/cpuCores,abc)"));
    assert!(m("(eq,extensions/netboot,true)"));
    assert!(!m("(eq,extensions/netboot,false)"));
    assert!(m("(eq,extensions/ip,null)"));
    assert!(!m("(eq,extensions/role,null)"));
}

#[test]
fn ordering_operators() {
    assert!(m("(gt,extensions/cpuCores,8)"));
    assert!(!m("(gt,extensions/cpuCores,16)"));
    assert!(m("(gte,extensions/cpuCores,16)"));
    assert!(m("(lt,extensions/cpuCores,32)"));
    assert!(!m("(lt,extensions/cpuCores,16)"));
    assert!(m("(lte,extensions/cpuCores,16)"));
    // Numbers compare as numbers, not text ("9" > "16" as text).
    assert!(m("(gt,extensions/cpuCores,9)"));
    // Text and RFC 3339 times compare as text.
    assert!(m("(gt,extensions/createdAt,2024-01-01T00:00:00Z)"));
    assert!(!m("(lt,extensions/createdAt,2024-01-01T00:00:00Z)"));
    assert!(m("(lt,description,node-2)"));
    // A number against text is not comparable: no match.
    assert!(!m("(gt,extensions/cpuCores,many)"));
}

#[test]
fn set_and_text_operators() {
    assert!(m("(in,extensions/role,worker,master)"));
    assert!(!m("(in,extensions/role,worker,storage)"));
    assert!(m("(nin,extensions/role,worker,storage)"));
    assert!(!m("(nin,extensions/role,worker,master)"));
    assert!(m("(cont,description,ode)"));
    assert!(m("(cont,description,zzz,-1)"));
    assert!(!m("(cont,description,zzz)"));
    assert!(m("(ncont,description,zzz)"));
    assert!(!m("(ncont,description,zzz,node)"));
    assert!(m("(in,extensions/cpuCores,8,16)"));
}

#[test]
fn arrays_match_any_element() {
    assert!(m("(eq,groups,c2)"));
    assert!(!m("(eq,groups,c3)"));
    assert!(m("(neq,groups,c3)"));
    assert!(!m("(neq,groups,c1)"));
    assert!(m("(eq,elements/name,eth1)"));
    assert!(m("(gt,elements/speed,20)"));
    assert!(!m("(gt,elements/speed,30)"));
}

#[test]
fn several_terms_are_and() {
    assert!(m("(eq,extensions/role,master);(gt,extensions/cpuCores,8)"));
    assert!(!m(
        "(eq,extensions/role,master);(gt,extensions/cpuCores,32)"
    ));
    assert!(m(" (eq,extensions/role,master) ; (eq,description,node-1) "));
}

#[test]
fn quoted_values() {
    let v = json!({"name": "a,b;(c)", "q": "it's"});
    let f = parse_filter("(eq,name,'a,b;(c)')").expect("parses");
    assert_eq!(f.terms[0].values, vec!["a,b;(c)"]);
    assert!(f.matches(&v));
    assert!(parse_filter("(eq,q,'it''s')").expect("parses").matches(&v));
    assert!(
        parse_filter("(in,name,x,'a,b;(c)')")
            .expect("parses")
            .matches(&v)
    );
}

#[test]
fn malformed_filters_name_the_parameter() {
    for bad in [
        "",
        "eq,name,x",
        "(eq,name,x",
        "(eq,name)",
        "(eq)",
        "(like,name,x)",
        "(eq,name,x,y)",
        "(gt,name,1,2)",
        "(eq,name,x)(eq,name,y)",
        "(eq,name,x);",
        "(eq,,x)",
        "(eq,a//b,x)",
        "(eq,name,'x)",
        "(eq,name,'x'y)",
        "(eq,name,x) junk",
    ] {
        let e = parse_filter(bad).expect_err(bad);
        assert_eq!(e.parameter, "filter", "{bad}");
        assert!(!e.message.is_empty());
    }
    let e = parse_filter("(like,name,x)").expect_err("unknown op");
    assert!(e.message.contains("like") && e.message.contains("ncont"));
}

#[test]
fn attribute_check() {
    let f = parse_filter("(eq,extensions/role,x);(eq,name,y)").expect("parses");
    assert!(f.check_attributes(&["name", "extensions"]).is_ok());
    let e = f.check_attributes(&["name"]).expect_err("unknown");
    assert_eq!(e.parameter, "filter");
    assert!(e.message.contains("extensions/role"));
}

fn sel(
    all: Option<&str>,
    fields: Option<&str>,
    ex: Option<&str>,
    def: Option<&str>,
) -> SelectorParams {
    SelectorParams {
        all_fields: all.map(str::to_owned),
        fields: fields.map(str::to_owned),
        exclude_fields: ex.map(str::to_owned),
        exclude_default: def.map(str::to_owned),
    }
}

const ATTRS: &[&str] = &[
    "resourceId",
    "description",
    "groups",
    "elements",
    "extensions",
];

#[test]
fn default_and_all_fields() {
    let s = sel(None, None, None, None).selector(ATTRS).expect("ok");
    assert_eq!(s, Selector::ExcludeDefault);
    let out = s.apply(machine(), "resourceId", &["elements"]);
    assert!(out.get("elements").is_none());
    assert_eq!(out["description"], "node-1");
    let s = sel(None, None, None, Some("")).selector(ATTRS).expect("ok");
    assert!(
        s.apply(machine(), "resourceId", &["elements"])
            .get("elements")
            .is_none()
    );
    let s = sel(Some(""), None, None, None).selector(ATTRS).expect("ok");
    assert_eq!(s.apply(machine(), "resourceId", &["elements"]), machine());
}

#[test]
fn fields_projects_paths_and_keeps_the_id() {
    let s = sel(
        None,
        Some("description,extensions/role,elements/name"),
        None,
        None,
    )
    .selector(ATTRS)
    .expect("ok");
    let out = s.apply(machine(), "resourceId", &[]);
    assert_eq!(
        out,
        json!({
            "resourceId": "r1",
            "description": "node-1",
            "extensions": {"role": "master"},
            "elements": [{"name": "eth0"}, {"name": "eth1"}]
        })
    );
    // A listed path the object lacks is simply absent.
    let s = sel(
        None,
        Some("extensions/nothing/deeper,extensions/role/x"),
        None,
        None,
    )
    .selector(ATTRS)
    .expect("ok");
    assert_eq!(
        s.apply(machine(), "resourceId", &[]),
        json!({"resourceId": "r1"})
    );
}

#[test]
fn exclude_fields_removes_paths() {
    let s = sel(
        None,
        None,
        Some("groups,extensions/cpuCores,elements/speed"),
        None,
    )
    .selector(ATTRS)
    .expect("ok");
    let out = s.apply(machine(), "resourceId", &[]);
    assert!(out.get("groups").is_none());
    assert!(out["extensions"].get("cpuCores").is_none());
    assert_eq!(out["extensions"]["role"], "master");
    assert_eq!(out["elements"], json!([{"name": "eth0"}, {"name": "eth1"}]));
    // With exclude_default the default-excluded set goes too.
    let s = sel(None, None, Some("groups"), Some(""))
        .selector(ATTRS)
        .expect("ok");
    let out = s.apply(machine(), "resourceId", &["elements"]);
    assert!(out.get("elements").is_none() && out.get("groups").is_none());
    assert!(out.get("description").is_some());
}

#[test]
fn bad_selectors_name_the_parameter() {
    let cases = [
        (sel(Some(""), Some("groups"), None, None), "all_fields"),
        (sel(Some(""), None, None, Some("")), "all_fields"),
        (
            sel(None, Some("groups"), Some("groups"), None),
            "exclude_fields",
        ),
        (sel(None, Some("nothing"), None, None), "fields"),
        (sel(None, Some("groups,"), None, None), "fields"),
        (sel(None, Some(""), None, None), "fields"),
        (sel(None, None, Some("a//b"), None), "exclude_fields"),
        (sel(None, None, Some("nothing"), None), "exclude_fields"),
        (sel(Some("yes"), None, None, None), "all_fields"),
        (sel(None, None, None, Some("1")), "exclude_default"),
    ];
    for (params, parameter) in cases {
        let e = params.selector(ATTRS).expect_err(parameter);
        assert_eq!(e.parameter, parameter, "{params:?}: {e}");
    }
    assert_eq!(
        sel(Some("true"), None, None, None).selector(ATTRS),
        Ok(Selector::All)
    );
}

#[test]
fn paging_markers() {
    assert_eq!(
        parse_paging(None, None).unwrap(),
        Paging {
            start: 0,
            limit: MAX_PAGE_SIZE
        }
    );
    let m = page_marker(20);
    assert!(!m.contains("20") || m.len() > 2, "opaque: {m}");
    assert_eq!(
        parse_paging(Some(&m), Some("10")).unwrap(),
        Paging {
            start: 20,
            limit: 10
        }
    );
    for bad in ["", "20", "!!", &page_marker(0)[1..]] {
        let e = parse_paging(Some(bad), None).unwrap_err();
        assert_eq!(e.parameter, "nextpage_opaque_marker", "{bad}");
    }
    for bad in ["0", "1001", "-1", "x"] {
        assert_eq!(
            parse_paging(None, Some(bad)).unwrap_err().parameter,
            "limit"
        );
    }
    let p = Paging { start: 0, limit: 2 };
    assert_eq!(next_link("/x?limit=2", p, 2), None);
    let link = next_link("/x?limit=2&nextpage_opaque_marker=abc", p, 3).unwrap();
    assert_eq!(
        link,
        format!(
            "</x?limit=2&nextpage_opaque_marker={}>; rel=\"next\"",
            page_marker(2)
        )
    );
    assert_eq!(
        next_link("/x", Paging { start: 4, limit: 1 }, 9).unwrap(),
        format!(
            "</x?nextpage_opaque_marker={}>; rel=\"next\"",
            page_marker(5)
        )
    );
}
