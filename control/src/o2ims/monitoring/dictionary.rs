//! The alarm definitions and the alarm dictionaries (one per alarmed object type), and their
//! routes: `GET /alarmDictionaries[/{alarmDictionaryId}]` under the monitoring prefixes and
//! `GET /resourceTypes/{resourceTypeId}/alarmDictionary` under the inventory prefixes.
//!
//! Alarmed object types (`objectTypeId`, a name-based UUID like every resource type id):
//!
//! | kind | type name | `objectTypeId` | `objectId` | `objectClass` |
//! | --- | --- | --- | --- | --- |
//! | edge worker | `edge-worker` | `named_id("resourceType", "edge-worker")` | `id("worker", row)` | `ims.control.EdgeWorker` |
//! | machine | `bare-metal-server` | the inventory's resource type | the resource id | `oran.o2ims.inventory.Resource` |
//! | IP pool | `ip-pool` | `named_id("resourceType", "ip-pool")` | `id("ipPool", row)` | `ims.control.IpPool` |
//!
//! Edge workers and IP pools are not O2ims resources (the inventory's `resourceTypes` lists
//! only the server type); their type ids exist for alarms alone, and their dictionaries are
//! served under `/resourceTypes/{id}/alarmDictionary` all the same.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::scope::ScopeRead;
use crate::error::{ApiError, ApiPath};
use crate::o2ims::objects::SERVER_TYPE;
use crate::o2ims::{CloudSettings, cloud_settings};
use crate::state::AppState;

/// `perceivedSeverity` values (SPEC10 Table 3.3.6.2.2-1).
pub mod severity {
    /// CRITICAL.
    pub const CRITICAL: i64 = 0;
    /// MAJOR.
    pub const MAJOR: i64 = 1;
    /// MINOR.
    pub const MINOR: i64 = 2;
    /// WARNING.
    pub const WARNING: i64 = 3;
    /// INDETERMINATE.
    pub const INDETERMINATE: i64 = 4;
    /// CLEARED.
    pub const CLEARED: i64 = 5;

    /// The severity's name.
    #[must_use]
    pub const fn name(s: i64) -> &'static str {
        match s {
            CRITICAL => "CRITICAL",
            MAJOR => "MAJOR",
            MINOR => "MINOR",
            WARNING => "WARNING",
            CLEARED => "CLEARED",
            _ => "INDETERMINATE",
        }
    }
}

/// The kinds of object alarms are raised on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectKind {
    /// An edge worker (`workers` row).
    Edge,
    /// A machine (`machines` row; an O2ims resource).
    Machine,
    /// An IP pool (`ip_pools` row).
    IpPool,
}

impl ObjectKind {
    /// Every kind.
    pub const ALL: [Self; 3] = [Self::Edge, Self::Machine, Self::IpPool];

    /// The key stored in `o2ims_alarms.object_kind` and used for the object's id.
    #[must_use]
    pub const fn key(self) -> &'static str {
        match self {
            Self::Edge => "worker",
            Self::Machine => "machine",
            Self::IpPool => "ipPool",
        }
    }

    /// The kind stored as `key`.
    #[must_use]
    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.key() == key)
    }

    /// The resource type's name.
    #[must_use]
    pub const fn type_name(self) -> &'static str {
        match self {
            Self::Edge => "edge-worker",
            Self::Machine => SERVER_TYPE,
            Self::IpPool => "ip-pool",
        }
    }

    /// `objectClass`.
    #[must_use]
    pub const fn object_class(self) -> &'static str {
        match self {
            Self::Edge => "ims.control.EdgeWorker",
            Self::Machine => "oran.o2ims.inventory.Resource",
            Self::IpPool => "ims.control.IpPool",
        }
    }

    /// `objectTypeId`.
    #[must_use]
    pub fn type_id(self, cloud: &CloudSettings) -> Uuid {
        cloud.named_id("resourceType", self.type_name())
    }

    /// The id of this kind's alarm dictionary.
    #[must_use]
    pub fn dictionary_id(self, cloud: &CloudSettings) -> Uuid {
        cloud.named_id("alarmDictionary", self.type_name())
    }
}

/// One alarm this control plane raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Definition {
    /// Stable name (stored in `o2ims_alarms.definition`).
    pub name: &'static str,
    /// What it is raised on.
    pub kind: ObjectKind,
    /// Severity while raised.
    pub severity: i64,
    /// Description.
    pub description: &'static str,
    /// When it is raised.
    pub raise: &'static str,
    /// When it is cleared.
    pub clear: &'static str,
    /// What an operator can do.
    pub repair: &'static str,
}

/// An edge missed its heartbeats.
pub const EDGE_DOWN: &str = "edge-down";
/// An edge reports a service error.
pub const EDGE_SERVICE_ERROR: &str = "edge-service-error";
/// A machine's provisioning failed.
pub const MACHINE_FAILED: &str = "machine-provisioning-failed";
/// An IP pool is almost full.
pub const POOL_EXHAUSTED: &str = "ip-pool-usage-high";

/// Pool usage (percent) at or above which [`POOL_EXHAUSTED`] is raised.
pub const POOL_RAISE_PERCENT: i64 = 90;
/// Pool usage (percent) below which it is cleared again (hysteresis).
pub const POOL_CLEAR_PERCENT: i64 = 85;

/// Every alarm definition.
pub const DEFINITIONS: [Definition; 4] = [
    Definition {
        name: EDGE_DOWN,
        kind: ObjectKind::Edge,
        severity: severity::MAJOR,
        description: "An edge worker that was heard from has stopped sending heartbeats",
        raise: "the worker is shown inactive: no heartbeat for three of its heartbeat intervals",
        clear: "a heartbeat arrives again (the worker is shown active or error), or the worker \
                is revoked or deleted",
        repair: "Check that netbootd runs on the edge host and can reach the control plane",
    },
    Definition {
        name: EDGE_SERVICE_ERROR,
        kind: ObjectKind::Edge,
        severity: severity::MINOR,
        description: "An edge worker reports a failing service (DHCP, TFTP, HTTP, …)",
        raise: "the worker's status is error (a heartbeat with a failed service, an uplink \
                ServiceError event or POST /api/ims-worker/report_error)",
        clear: "the worker's status is no longer error (a clean heartbeat, or it stops \
                reporting: then edge-down takes over)",
        repair: "Read the worker's last_error and the edge's log; fix the service's \
                 configuration or host",
    },
    Definition {
        name: MACHINE_FAILED,
        kind: ObjectKind::Machine,
        severity: severity::MAJOR,
        description: "A machine's provisioning or operation failed",
        raise: "the machine's status is ERROR (or FAILED)",
        clear: "the machine leaves that status, or it is deleted",
        repair: "Read the machine's events, fix the boot profile or hardware, and set it \
                 back to DEPLOYING",
    },
    Definition {
        name: POOL_EXHAUSTED,
        kind: ObjectKind::IpPool,
        severity: severity::WARNING,
        description: "An IP pool is almost out of addresses",
        raise: "active leases inside the pool cover 90 % or more of its usable size",
        clear: "usage falls under 85 % (hysteresis), or the pool is deleted or grown",
        repair: "Grow the pool's range or shorten its lease time",
    },
];

/// The definition named `name`.
#[must_use]
pub fn definition(name: &str) -> Option<&'static Definition> {
    DEFINITIONS.iter().find(|d| d.name == name)
}

impl Definition {
    /// `alarmDefinitionId`.
    #[must_use]
    pub fn id(&self, cloud: &CloudSettings) -> Uuid {
        cloud.named_id("alarmDefinition", self.name)
    }

    /// `probableCauseId` (one probable cause per definition).
    #[must_use]
    pub fn probable_cause_id(&self, cloud: &CloudSettings) -> Uuid {
        cloud.named_id("probableCause", self.name)
    }

    fn info(&self, cloud: &CloudSettings) -> AlarmDefinition {
        AlarmDefinition {
            alarm_definition_id: self.id(cloud),
            alarm_name: self.name.to_owned(),
            alarm_last_change: "1.0.0".to_owned(),
            alarm_change_type: "ADDED".to_owned(),
            alarm_description: self.description.to_owned(),
            proposed_repair_actions: self.repair.to_owned(),
            clearing_type: "AUTOMATIC".to_owned(),
            management_interface_id: vec!["O2IMS".to_owned()],
            pk_notification_field: vec!["alarmDefinitionId".to_owned()],
            alarm_additional_fields: json!({}),
            extensions: json!({
                "perceivedSeverity": self.severity,
                "severity": severity::name(self.severity),
                "probableCauseId": self.probable_cause_id(cloud),
                "raiseCondition": self.raise,
                "clearCondition": self.clear,
            }),
        }
    }
}

/// `AlarmDefinition`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlarmDefinition {
    /// Id.
    pub alarm_definition_id: Uuid,
    /// Name.
    pub alarm_name: String,
    /// Version of the last change.
    pub alarm_last_change: String,
    /// `ADDED`.
    pub alarm_change_type: String,
    /// Description.
    pub alarm_description: String,
    /// What an operator can do.
    pub proposed_repair_actions: String,
    /// `AUTOMATIC` (cleared by the control plane when the condition ends).
    pub clearing_type: String,
    /// `["O2IMS"]`.
    pub management_interface_id: Vec<String>,
    /// `["alarmDefinitionId"]`.
    pub pk_notification_field: Vec<String>,
    /// None.
    #[schema(value_type = Object)]
    pub alarm_additional_fields: Value,
    /// `{perceivedSeverity, severity, probableCauseId, raiseCondition, clearCondition}`.
    #[schema(value_type = Object)]
    pub extensions: Value,
}

/// `ProbableCause`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbableCause {
    /// Id.
    pub probable_cause_id: Uuid,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
}

/// `AlarmDictionary` of one object type.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlarmDictionary {
    /// Id.
    pub alarm_dictionary_id: Uuid,
    /// Version.
    pub alarm_dictionary_version: String,
    /// Schema version.
    pub alarm_dictionary_schema_version: String,
    /// The object type's name.
    pub entity_type: String,
    /// Vendor.
    pub vendor: String,
    /// `["O2IMS"]`.
    pub management_interface_id: Vec<String>,
    /// `["alarmDefinitionId"]`.
    pub pk_notification_field: Vec<String>,
    /// The object type (`objectTypeId` of its alarms).
    pub resource_type_id: Uuid,
    /// The alarms of the type.
    pub alarm_definition: Vec<AlarmDefinition>,
    /// Their probable causes.
    pub probable_causes: Vec<ProbableCause>,
}

/// The dictionary of `kind`.
#[must_use]
pub fn dictionary(cloud: &CloudSettings, kind: ObjectKind) -> AlarmDictionary {
    let defs: Vec<_> = DEFINITIONS.iter().filter(|d| d.kind == kind).collect();
    AlarmDictionary {
        alarm_dictionary_id: kind.dictionary_id(cloud),
        alarm_dictionary_version: "1.0.0".to_owned(),
        alarm_dictionary_schema_version: "1.0".to_owned(),
        entity_type: kind.type_name().to_owned(),
        vendor: "ims-control".to_owned(),
        management_interface_id: vec!["O2IMS".to_owned()],
        pk_notification_field: vec!["alarmDefinitionId".to_owned()],
        resource_type_id: kind.type_id(cloud),
        alarm_definition: defs.iter().map(|d| d.info(cloud)).collect(),
        probable_causes: defs
            .iter()
            .map(|d| ProbableCause {
                probable_cause_id: d.probable_cause_id(cloud),
                name: d.name.to_owned(),
                description: d.raise.to_owned(),
            })
            .collect(),
    }
}

/// Every dictionary.
#[must_use]
pub fn dictionaries(cloud: &CloudSettings) -> Vec<AlarmDictionary> {
    ObjectKind::ALL
        .into_iter()
        .map(|k| dictionary(cloud, k))
        .collect()
}

/// The alarm dictionaries (one per alarmed object type).
#[utoipa::path(get, path = "/alarmDictionaries", tag = "o2ims-monitoring",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every alarm dictionary", body = Vec<AlarmDictionary>),
        (status = 401, description = "No or invalid token", body = crate::error::Problem)))]
async fn list_dictionaries(
    _caller: ScopeRead,
    State(state): State<AppState>,
) -> Result<Json<Vec<AlarmDictionary>>, ApiError> {
    let cloud = cloud_settings(&state.db).await?;
    Ok(Json(dictionaries(&cloud)))
}

/// One alarm dictionary.
#[utoipa::path(get, path = "/alarmDictionaries/{alarmDictionaryId}", tag = "o2ims-monitoring",
    security(("bearer" = [])),
    params(("alarmDictionaryId" = String, Path, description = "Alarm dictionary id (UUID)")),
    responses(
        (status = 200, description = "The dictionary", body = AlarmDictionary),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 404, description = "No such dictionary", body = crate::error::Problem)))]
async fn get_dictionary(
    _caller: ScopeRead,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AlarmDictionary>, ApiError> {
    let cloud = cloud_settings(&state.db).await?;
    dictionary_where(&cloud, &id, ObjectKind::dictionary_id, "alarm dictionary")
}

/// The dictionary of the kind whose `id_of` is `id` (any case); 404 naming `what` otherwise.
fn dictionary_where(
    cloud: &CloudSettings,
    id: &str,
    id_of: fn(ObjectKind, &CloudSettings) -> Uuid,
    what: &str,
) -> Result<Json<AlarmDictionary>, ApiError> {
    ObjectKind::ALL
        .into_iter()
        .find(|k| id_of(*k, cloud).to_string() == id.to_ascii_lowercase())
        .map(|k| Json(dictionary(cloud, k)))
        .ok_or_else(|| ApiError::not_found(format!("{what} {id}")))
}

/// The alarm dictionary of a resource type (the server type, or the edge-worker and ip-pool
/// types alarms are raised on).
#[utoipa::path(get, path = "/resourceTypes/{resourceTypeId}/alarmDictionary", tag = "o2ims",
    security(("bearer" = [])),
    params(("resourceTypeId" = String, Path, description = "Resource type id (UUID)")),
    responses(
        (status = 200, description = "The type's alarm dictionary", body = AlarmDictionary),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 404, description = "No such resource type", body = crate::error::Problem)))]
async fn type_dictionary(
    _caller: ScopeRead,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AlarmDictionary>, ApiError> {
    let cloud = cloud_settings(&state.db).await?;
    dictionary_where(&cloud, &id, ObjectKind::type_id, "resource type")
}

/// The dictionary routes of the monitoring API.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_dictionaries))
        .routes(routes!(get_dictionary))
}

/// The dictionary route of the inventory API.
pub(crate) fn inventory_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(type_dictionary))
}
