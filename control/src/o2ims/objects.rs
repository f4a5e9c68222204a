//! The O2ims inventory objects and how they are made from the store's sites, clusters and
//! machines.
//!
//! - Site → `ResourcePoolInfo` (kind `pool`), `OCloudSiteInfo` (kind `site`) and
//!   `LocationInfo` (kind `location`, its `globalLocationId`).
//! - Machine of a cluster at the site → `ResourceInfo` (kind `machine`); machines of clusters
//!   without a site belong to no pool.
//! - Cluster → `DeploymentManagerInfo` (kind `cluster`).
//! - One resource type, a bare-metal server (`resourceKind` PHYSICAL, `resourceClass` COMPUTE).

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::AnyConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::page::{MAX_PAGE_SIZE, PageRequest};
use crate::db::{Db, StoreError, format_ts};
use crate::o2ims::CloudSettings;
use crate::store::clusters::{self, Cluster, ClusterFilter, NameOrId};
use crate::store::machines::{self, Machine, MachineFilter};
use crate::store::sites::{self, Site};

/// The one resource type's name.
pub const SERVER_TYPE: &str = "bare-metal-server";

/// `CloudInfo` (`OCloudInfo`): the O-Cloud.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudInfo {
    /// This O-Cloud's id.
    pub o_cloud_id: Uuid,
    /// The SMO-assigned id (nil until assigned).
    pub global_cloud_id: Uuid,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// The API root.
    pub service_uri: String,
    /// Vendor data: the software version.
    #[schema(value_type = Object)]
    pub extensions: Value,
}

/// `ResourceTypeInfo`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceTypeInfo {
    /// Id.
    pub resource_type_id: Uuid,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Vendor.
    pub vendor: String,
    /// Model.
    pub model: String,
    /// Version.
    pub version: String,
    /// `PHYSICAL`.
    pub resource_kind: String,
    /// `COMPUTE`.
    pub resource_class: String,
    /// Alarm dictionary (not yet served).
    #[schema(value_type = Object)]
    pub alarm_dictionary: Value,
    /// Vendor data.
    #[schema(value_type = Object)]
    pub extensions: Value,
}

/// `ResourcePoolInfo` (the v1/v2 superset): one per site.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourcePoolInfo {
    /// Id.
    pub resource_pool_id: Uuid,
    /// The site's O-Cloud site id (v2).
    pub o_cloud_site_id: Uuid,
    /// The O-Cloud (v1).
    pub o_cloud_id: Uuid,
    /// The site's location (v1).
    pub global_location_id: String,
    /// The site's name.
    pub name: String,
    /// The site's description.
    pub description: String,
    /// The site's name (v1 `location`).
    pub location: String,
    /// `{siteId, clusterCount, workerCount, subnets}`.
    #[schema(value_type = Object)]
    pub extensions: Value,
}

/// `ResourceInfo`: a machine.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// Id.
    pub resource_id: Uuid,
    /// Its pool (its cluster's site).
    pub resource_pool_id: Uuid,
    /// Its type.
    pub resource_type_id: Uuid,
    /// The boot MAC.
    pub global_asset_id: String,
    /// The host name.
    pub description: String,
    /// `role=…`, `os=…`.
    pub tags: Vec<String>,
    /// Its deployment manager (cluster) id.
    pub groups: Vec<Uuid>,
    /// Sub-resources (none yet).
    #[schema(value_type = Vec<Object>)]
    pub elements: Vec<Value>,
    /// `{machineId, hostname, ip, mac, cpuCores, role, osType, status, health, clusterId,
    /// clusterName, netboot, createdAt, updatedAt}`.
    #[schema(value_type = Object)]
    pub extensions: Value,
}

/// `DeploymentManagerInfo`: a cluster.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentManagerInfo {
    /// Id.
    pub deployment_manager_id: Uuid,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// The O-Cloud.
    pub o_cloud_id: Uuid,
    /// The DMS API endpoint (not known to the control plane yet: empty).
    pub service_uri: String,
    /// Its site's location.
    pub supported_locations: Vec<String>,
    /// `{}` for now.
    #[schema(value_type = Object)]
    pub capabilities: Value,
    /// `{cpu, machines}`.
    #[schema(value_type = Object)]
    pub capacity: Value,
    /// `{clusterId, status, health, siteName, machineCount}`.
    #[schema(value_type = Object)]
    pub extensions: Value,
}

/// `LocationInfo`: a site's location.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocationInfo {
    /// Id.
    pub global_location_id: String,
    /// The site's name.
    pub name: String,
    /// The site's description.
    pub description: String,
    /// The O-Cloud sites there.
    pub o_cloud_site_ids: Vec<Uuid>,
    /// The address (the site's description).
    pub address: String,
    /// Vendor data.
    #[schema(value_type = Object)]
    pub extensions: Value,
}

/// `OCloudSiteInfo`: a site.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OCloudSiteInfo {
    /// Id.
    pub o_cloud_site_id: Uuid,
    /// Its location.
    pub global_location_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Its pools (one).
    pub resource_pools: Vec<Uuid>,
    /// `{siteId, clusterCount, workerCount}`.
    #[schema(value_type = Object)]
    pub extensions: Value,
}

/// Every site, ordered by id.
///
/// # Errors
/// The store failed.
pub async fn all_sites(conn: &mut AnyConnection) -> Result<Vec<Site>, StoreError> {
    let mut out = Vec::new();
    for page in 1.. {
        let request = PageRequest {
            page,
            page_size: MAX_PAGE_SIZE,
        };
        let (count, list) = sites::list(conn, request).await?;
        let empty = list.is_empty();
        out.extend(list);
        if empty || i64::try_from(out.len()).unwrap_or(i64::MAX) >= count {
            break;
        }
    }
    Ok(out)
}

/// Every cluster, ordered by id.
///
/// # Errors
/// The store failed.
pub async fn all_clusters(db: &Db) -> Result<Vec<Cluster>, StoreError> {
    let mut out = Vec::new();
    for page in 1.. {
        let request = PageRequest {
            page,
            page_size: MAX_PAGE_SIZE,
        };
        let (count, list) = clusters::list(db, &ClusterFilter::default(), request).await?;
        let empty = list.is_empty();
        out.extend(list);
        if empty || i64::try_from(out.len()).unwrap_or(i64::MAX) >= count {
            break;
        }
    }
    Ok(out)
}

/// Every machine of the site's clusters, ordered by id.
///
/// # Errors
/// The store failed.
pub async fn site_machines(db: &Db, site_id: i64) -> Result<Vec<Machine>, StoreError> {
    let filter = MachineFilter {
        site: Some(NameOrId::Id(site_id)),
        ..MachineFilter::default()
    };
    let mut out = Vec::new();
    for page in 1.. {
        let request = PageRequest {
            page,
            page_size: MAX_PAGE_SIZE,
        };
        let (count, list) = machines::list(db, &filter, request).await?;
        let empty = list.is_empty();
        out.extend(list);
        if empty || i64::try_from(out.len()).unwrap_or(i64::MAX) >= count {
            break;
        }
    }
    Ok(out)
}

/// CPU cores per cluster id (a cluster without machines is absent).
///
/// # Errors
/// The store failed.
pub async fn cores_per_cluster(db: &Db) -> Result<Vec<(i64, i64)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT cluster_id, CAST(COALESCE(SUM(cpu_cores), 0) AS BIGINT) FROM machines \
         GROUP BY cluster_id ORDER BY cluster_id",
    )
    .fetch_all(db.pool())
    .await?)
}

impl CloudSettings {
    /// The `globalLocationId` of a site.
    #[must_use]
    pub fn location_id(&self, site_id: i64) -> String {
        self.id("location", site_id).to_string()
    }

    /// The O-Cloud object.
    #[must_use]
    pub fn cloud_info(&self, service_uri: String) -> CloudInfo {
        CloudInfo {
            o_cloud_id: self.ocloud_id,
            global_cloud_id: self.global_cloud_id,
            name: self.name.clone(),
            description: self.description.clone(),
            service_uri,
            extensions: json!({"software": "ims-control", "version": env!("CARGO_PKG_VERSION")}),
        }
    }

    /// The resource types.
    #[must_use]
    pub fn resource_types(&self) -> Vec<ResourceTypeInfo> {
        vec![ResourceTypeInfo {
            resource_type_id: self.named_id("resourceType", SERVER_TYPE),
            name: SERVER_TYPE.to_owned(),
            description: "A bare-metal server booted over the network by the edge workers"
                .to_owned(),
            vendor: String::new(),
            model: String::new(),
            version: String::new(),
            resource_kind: "PHYSICAL".to_owned(),
            resource_class: "COMPUTE".to_owned(),
            alarm_dictionary: json!({}),
            extensions: json!({}),
        }]
    }

    /// A site's pool.
    #[must_use]
    pub fn pool(&self, s: &Site) -> ResourcePoolInfo {
        ResourcePoolInfo {
            resource_pool_id: self.id("pool", s.id),
            o_cloud_site_id: self.id("site", s.id),
            o_cloud_id: self.ocloud_id,
            global_location_id: self.location_id(s.id),
            name: s.name.clone(),
            description: s.description.clone(),
            location: s.name.clone(),
            extensions: json!({
                "siteId": s.id,
                "clusterCount": s.cluster_count,
                "workerCount": s.worker_count,
                "subnets": s.subnets,
            }),
        }
    }

    /// A site as an O-Cloud site.
    #[must_use]
    pub fn site(&self, s: &Site) -> OCloudSiteInfo {
        OCloudSiteInfo {
            o_cloud_site_id: self.id("site", s.id),
            global_location_id: self.location_id(s.id),
            name: s.name.clone(),
            description: s.description.clone(),
            resource_pools: vec![self.id("pool", s.id)],
            extensions: json!({
                "siteId": s.id,
                "clusterCount": s.cluster_count,
                "workerCount": s.worker_count,
            }),
        }
    }

    /// A site's location.
    #[must_use]
    pub fn location(&self, s: &Site) -> LocationInfo {
        LocationInfo {
            global_location_id: self.location_id(s.id),
            name: s.name.clone(),
            description: s.description.clone(),
            o_cloud_site_ids: vec![self.id("site", s.id)],
            address: s.description.clone(),
            extensions: json!({"siteId": s.id}),
        }
    }

    /// A machine of the pool of site `site_id`.
    #[must_use]
    pub fn resource(&self, site_id: i64, m: &Machine) -> ResourceInfo {
        ResourceInfo {
            resource_id: self.id("machine", m.id),
            resource_pool_id: self.id("pool", site_id),
            resource_type_id: self.named_id("resourceType", SERVER_TYPE),
            global_asset_id: m.mac.to_string(),
            description: m.hostname.clone(),
            tags: vec![
                format!("role={}", m.role.as_str()),
                format!("os={}", m.os_type.as_str()),
            ],
            groups: vec![self.id("cluster", m.cluster_id)],
            elements: Vec::new(),
            extensions: json!({
                "machineId": m.id,
                "hostname": m.hostname,
                "ip": m.ip.map(|ip| ip.to_string()),
                "mac": m.mac.to_string(),
                "cpuCores": m.cpu_cores,
                "role": m.role.as_str(),
                "osType": m.os_type.as_str(),
                "status": m.status.as_str(),
                "health": m.health.as_str(),
                "clusterId": m.cluster_id,
                "clusterName": m.cluster_name,
                "netboot": m.netboot,
                "createdAt": format_ts(m.created_at),
                "updatedAt": format_ts(m.updated_at),
            }),
        }
    }

    /// A cluster with `cores` CPU cores in all.
    #[must_use]
    pub fn deployment_manager(&self, c: &Cluster, cores: i64) -> DeploymentManagerInfo {
        DeploymentManagerInfo {
            deployment_manager_id: self.id("cluster", c.id),
            name: c.name.clone(),
            description: c.description.clone(),
            o_cloud_id: self.ocloud_id,
            service_uri: String::new(),
            supported_locations: c.site_id.map(|s| self.location_id(s)).into_iter().collect(),
            capabilities: json!({}),
            capacity: json!({"cpu": cores, "machines": c.machine_count}),
            extensions: json!({
                "clusterId": c.id,
                "status": c.status.as_str(),
                "health": c.health.as_str(),
                "siteId": c.site_id,
                "siteName": c.site_name,
                "machineCount": c.machine_count,
            }),
        }
    }
}
