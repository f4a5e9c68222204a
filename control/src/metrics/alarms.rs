//! O2ims alarm gauges: the open alarms as the store knows them, counted when `/metrics` is
//! scraped.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `ims_alarms_open` | gauge | `severity`, `alarm` | open (not cleared) alarms by severity and alarm definition name (`edge-down`, …) |
//! | `ims_alarms_unacknowledged` | gauge | `severity` | open alarms no operator has acknowledged yet |
//!
//! Every alarm definition ([`crate::o2ims::monitoring::dictionary::DEFINITIONS`]) with its
//! severity, and every severity (`CRITICAL`, `MAJOR`, `MINOR`, `WARNING`, `INDETERMINATE`),
//! is exported at 0 before its first alarm, so rules and dashboards see the series. The counts
//! come from one `COUNT(*) … GROUP BY` over `o2ims_alarms`, so every replica on one database
//! reports the same values (aggregate them with `max by`), whichever replica's evaluator pass
//! raised the alarms.

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::db::Db;
use crate::o2ims::monitoring::dictionary::{DEFINITIONS, severity};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OpenLabels {
    severity: String,
    alarm: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SeverityLabels {
    severity: String,
}

/// The severities an open alarm can have (all but CLEARED).
const OPEN_SEVERITIES: [i64; 5] = [
    severity::CRITICAL,
    severity::MAJOR,
    severity::MINOR,
    severity::WARNING,
    severity::INDETERMINATE,
];

/// Open alarms of one (definition, severity, acknowledged) group.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OpenGroup {
    definition: String,
    severity: i64,
    acknowledged: bool,
    count: i64,
}

/// The alarm gauges of one registry.
#[derive(Debug, Default)]
pub(crate) struct AlarmMetrics {
    open: Family<OpenLabels, Gauge>,
    unacknowledged: Family<SeverityLabels, Gauge>,
}

impl AlarmMetrics {
    /// Registers every metric of this module in `registry`, at 0.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "ims_alarms_open",
            "Open (not cleared) O2ims alarms, by severity and alarm definition name",
            m.open.clone(),
        );
        registry.register(
            "ims_alarms_unacknowledged",
            "Open O2ims alarms not acknowledged yet, by severity",
            m.unacknowledged.clone(),
        );
        m.set(&[]);
        m
    }

    /// Counts the open alarms in `db` and sets the gauges.
    ///
    /// # Errors
    /// The store failed; the gauges keep their last values.
    pub(crate) async fn refresh(&self, db: &Db) -> Result<(), sqlx::Error> {
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT definition, severity, acknowledged, COUNT(*) FROM o2ims_alarms \
             WHERE cleared_at IS NULL GROUP BY definition, severity, acknowledged",
        )
        .fetch_all(db.pool())
        .await?;
        let groups: Vec<OpenGroup> = rows
            .into_iter()
            .map(|(definition, severity, acknowledged, count)| OpenGroup {
                definition,
                severity,
                acknowledged: acknowledged != 0,
                count,
            })
            .collect();
        self.set(&groups);
        Ok(())
    }

    fn set(&self, groups: &[OpenGroup]) {
        let mut open: BTreeMap<(&str, &str), i64> = DEFINITIONS
            .iter()
            .map(|d| ((severity::name(d.severity), d.name), 0))
            .collect();
        let mut unacknowledged: BTreeMap<&str, i64> = OPEN_SEVERITIES
            .iter()
            .map(|s| (severity::name(*s), 0))
            .collect();
        for g in groups {
            let name = severity::name(g.severity);
            *open.entry((name, g.definition.as_str())).or_default() += g.count;
            if !g.acknowledged {
                *unacknowledged.entry(name).or_default() += g.count;
            }
        }
        // Groups of definitions no longer in the store (an old version's) must disappear.
        self.open.clear();
        for ((severity, alarm), n) in open {
            self.open
                .get_or_create(&OpenLabels {
                    severity: severity.to_owned(),
                    alarm: alarm.to_owned(),
                })
                .set(n);
        }
        for (severity, n) in unacknowledged {
            self.unacknowledged
                .get_or_create(&SeverityLabels {
                    severity: severity.to_owned(),
                })
                .set(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    fn has(page: &str, line: &str) -> bool {
        page.lines().any(|l| l == line)
    }

    #[test]
    fn every_definition_and_severity_starts_at_zero() {
        let mut registry = Registry::default();
        let _m = AlarmMetrics::register(&mut registry);
        let text = render(&registry);
        for d in DEFINITIONS {
            let line = format!(
                "ims_alarms_open{{severity=\"{}\",alarm=\"{}\"}} 0",
                severity::name(d.severity),
                d.name
            );
            assert!(has(&text, &line), "missing {line} in\n{text}");
        }
        for s in ["CRITICAL", "MAJOR", "MINOR", "WARNING", "INDETERMINATE"] {
            let line = format!("ims_alarms_unacknowledged{{severity=\"{s}\"}} 0");
            assert!(has(&text, &line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("CLEARED"), "{text}");
    }

    #[test]
    fn groups_add_up_and_unknown_definitions_come_and_go() {
        let mut registry = Registry::default();
        let m = AlarmMetrics::register(&mut registry);
        let group = |definition: &str, severity, acknowledged, count| OpenGroup {
            definition: definition.to_owned(),
            severity,
            acknowledged,
            count,
        };
        m.set(&[
            group("edge-down", severity::MAJOR, false, 2),
            group("edge-down", severity::MAJOR, true, 1),
            group("machine-provisioning-failed", severity::MAJOR, false, 1),
            group("retired-alarm", severity::CRITICAL, true, 4),
        ]);
        let text = render(&registry);
        for line in [
            "ims_alarms_open{severity=\"MAJOR\",alarm=\"edge-down\"} 3",
            "ims_alarms_open{severity=\"MAJOR\",alarm=\"machine-provisioning-failed\"} 1",
            "ims_alarms_open{severity=\"CRITICAL\",alarm=\"retired-alarm\"} 4",
            "ims_alarms_open{severity=\"MINOR\",alarm=\"edge-service-error\"} 0",
            "ims_alarms_unacknowledged{severity=\"MAJOR\"} 3",
            "ims_alarms_unacknowledged{severity=\"CRITICAL\"} 0",
        ] {
            assert!(has(&text, line), "missing {line} in\n{text}");
        }
        m.set(&[]);
        let text = render(&registry);
        assert!(!text.contains("retired-alarm"), "{text}");
        assert!(
            has(
                &text,
                "ims_alarms_open{severity=\"MAJOR\",alarm=\"edge-down\"} 0"
            ),
            "{text}"
        );
        assert!(
            has(&text, "ims_alarms_unacknowledged{severity=\"MAJOR\"} 0"),
            "{text}"
        );
    }
}
