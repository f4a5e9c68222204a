//! Reading what the daemon reports: the Prometheus text format of `/metrics` and the JSON of
//! `netbootd leases --json`.

/// One lease as `netbootd leases --json` lists it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LeaseView {
    /// Leased address.
    pub(crate) ip: String,
    /// Client MAC, lower case.
    pub(crate) mac: String,
    /// Binding state, lower case (`bound`, `released`, ...).
    pub(crate) state: String,
    /// The whole JSON object, for messages and extra checks.
    pub(crate) raw: serde_json::Value,
}

/// Parse the Prometheus text format: the sum of the samples of `name` whose labels include all
/// of `want`.
pub(crate) fn metric_value(page: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in page.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, rest) = match line.rfind('}') {
            Some(i) => (&line[..=i], &line[i + 1..]),
            None => line.split_once(char::is_whitespace).unwrap_or((line, "")),
        };
        // The value is the first field after the series; a timestamp may follow.
        let value = rest.split_whitespace().next().unwrap_or("");
        let (metric, labels) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let have = parse_labels(labels);
        if want
            .iter()
            .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
        {
            sum += value.parse::<f64>().unwrap_or(f64::NAN);
        }
    }
    sum
}

/// `a="x",b="y"` → pairs (escapes `\"` and `\\` handled).
fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        if key.is_empty() || chars.next() != Some('"') {
            return out;
        }
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        val.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => break,
                _ => val.push(c),
            }
        }
        out.push((key, val));
    }
}

/// Find lease-like objects (with an `ip` and a `mac`) anywhere in the JSON listing.
pub(crate) fn collect_leases(v: &serde_json::Value, out: &mut Vec<LeaseView>) {
    match v {
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_leases(i, out)),
        serde_json::Value::Object(map) => {
            let s = |k: &str| map.get(k).and_then(|x| x.as_str()).map(str::to_owned);
            if let (Some(ip), Some(mac)) = (s("ip"), s("mac")) {
                let state = s("state")
                    .or_else(|| s("binding_state"))
                    .unwrap_or_default();
                out.push(LeaseView {
                    ip,
                    mac: mac.to_ascii_lowercase(),
                    state: state.to_ascii_lowercase(),
                    raw: v.clone(),
                });
            } else {
                map.values().for_each(|x| collect_leases(x, out));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::metric_value;

    #[test]
    fn prometheus_text_is_parsed() {
        let page = "# HELP x y\n# TYPE netbootd_dhcp_dropped_total counter\n\
            netbootd_dhcp_dropped_total{reason=\"malformed\"} 3\n\
            netbootd_dhcp_dropped_total{reason=\"wrong_op\"} 1\n\
            netbootd_dhcp_received_total{interface=\"srv0\",type=\"discover\"} 2\n\
            netbootd_dhcp_received_total{interface=\"relay\",type=\"discover\"} 5 1700000000\n\
            netbootd_dhcp_active_leases 4\n";
        assert_eq!(
            metric_value(
                page,
                "netbootd_dhcp_dropped_total",
                &[("reason", "malformed")]
            ),
            3.0
        );
        assert_eq!(metric_value(page, "netbootd_dhcp_dropped_total", &[]), 4.0);
        assert_eq!(
            metric_value(
                page,
                "netbootd_dhcp_received_total",
                &[("type", "discover")]
            ),
            7.0
        );
        assert_eq!(metric_value(page, "netbootd_dhcp_active_leases", &[]), 4.0);
        assert_eq!(
            metric_value(page, "netbootd_dhcp_active_leases_x", &[]),
            0.0
        );
    }
}
