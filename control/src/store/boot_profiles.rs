//! Boot profiles: the boot file for each firmware type, as the edge daemon's `[[boot_profile]]`
//! (`netboot/src/config.rs` `BootProfile`). A profile belongs to one site or, without a site, is
//! global. Names are unique; a profile is addressed by its id or its name.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::api::page::PageRequest;
use crate::db::StoreError;
use crate::store::sites::{Arg, Filter, is_id, site_fk, ts, xact_lock};

/// Advisory-lock key of profile-name checks.
const PROFILE_NAME_LOCK: i64 = 0x424f_4f54_0000_0001;

/// A boot profile as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BootProfile {
    /// Id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// The site's id; null for a global profile.
    pub site: Option<i64>,
    /// The site's name.
    pub site_name: Option<String>,
    /// Free text.
    pub description: String,
    /// Legacy BIOS PXE boot file (a path under the TFTP root).
    pub bios: Option<String>,
    /// UEFI x64 PXE boot file.
    pub uefi_x64: Option<String>,
    /// UEFI arm64 PXE boot file.
    pub uefi_arm64: Option<String>,
    /// UEFI HTTP boot URL.
    pub http: Option<String>,
    /// UEFI arm64 HTTP boot URL.
    pub http_arm64: Option<String>,
    /// What iPXE gets: a path or URL of the next stage, usually a script.
    pub ipxe_script: Option<String>,
    /// Kernel for the per-machine iPXE script (a path or URL).
    pub kernel: Option<String>,
    /// Initrd for the per-machine iPXE script (a path or URL).
    pub initrd: Option<String>,
    /// Kernel command line.
    pub cmdline: Option<String>,
    /// Creation time (RFC 3339).
    #[serde(serialize_with = "ts::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Last change (RFC 3339).
    #[serde(serialize_with = "ts::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

/// The writable fields of a boot profile, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootProfileValues {
    /// Name.
    pub name: String,
    /// Site id; `None` for global.
    pub site_id: Option<i64>,
    /// Description.
    pub description: String,
    /// The boot files, in [`FILE_COLUMNS`] order.
    pub files: [Option<String>; 9],
}

/// The optional boot-file columns, in the order of [`BootProfileValues::files`].
pub const FILE_COLUMNS: [&str; 9] = [
    "bios",
    "uefi_x64",
    "uefi_arm64",
    "http",
    "http_arm64",
    "ipxe_script",
    "kernel",
    "initrd",
    "cmdline",
];

const SELECT: &str = "SELECT p.id, p.name, p.site_id, s.name AS site_name, p.description, \
     p.bios, p.uefi_x64, p.uefi_arm64, p.http, p.http_arm64, p.ipxe_script, p.kernel, \
     p.initrd, p.cmdline, p.created_at, p.updated_at \
     FROM boot_profiles p LEFT JOIN sites s ON s.id = p.site_id";

fn from_row(row: &AnyRow) -> Result<BootProfile, sqlx::Error> {
    Ok(BootProfile {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        site: row.try_get("site_id")?,
        site_name: row.try_get("site_name")?,
        description: row.try_get("description")?,
        bios: row.try_get("bios")?,
        uefi_x64: row.try_get("uefi_x64")?,
        uefi_arm64: row.try_get("uefi_arm64")?,
        http: row.try_get("http")?,
        http_arm64: row.try_get("http_arm64")?,
        ipxe_script: row.try_get("ipxe_script")?,
        kernel: row.try_get("kernel")?,
        initrd: row.try_get("initrd")?,
        cmdline: row.try_get("cmdline")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The id of the profile `key` names: an id (all digits) or a name (case-insensitive).
///
/// # Errors
/// The store failed.
pub async fn find_id(conn: &mut AnyConnection, key: &str) -> Result<Option<i64>, StoreError> {
    let key = key.trim();
    let row = if is_id(key) {
        let Ok(id) = key.parse::<i64>() else {
            return Ok(None);
        };
        sqlx::query("SELECT id FROM boot_profiles WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
    } else {
        sqlx::query("SELECT id FROM boot_profiles WHERE LOWER(name) = LOWER($1)")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?
    };
    Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?)
}

/// The profile `id`.
///
/// # Errors
/// [`StoreError::NotFound`]; the store failed.
pub async fn get(conn: &mut AnyConnection, id: i64) -> Result<BootProfile, StoreError> {
    let row = sqlx::query(&format!("{SELECT} WHERE p.id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("boot profile {id}")))?;
    Ok(from_row(&row)?)
}

/// One page of profiles ordered by id (only those of `site` when given), and the total count.
///
/// # Errors
/// The store failed.
pub async fn list(
    conn: &mut AnyConnection,
    site: Option<i64>,
    page: PageRequest,
) -> Result<(i64, Vec<BootProfile>), StoreError> {
    let mut filter = Filter::default();
    if let Some(site) = site {
        filter.push("p.site_id = ?", Arg::Int(site));
    }
    let count = filter.count(conn, "boot_profiles p").await?;
    let sql = format!(
        "{SELECT}{} ORDER BY p.id{}",
        filter.where_sql(),
        filter.page_sql()
    );
    let rows = filter
        .bind_page(sqlx::query(&sql), page)
        .fetch_all(&mut *conn)
        .await?;
    Ok((count, rows.iter().map(from_row).collect::<Result<_, _>>()?))
}

/// 409 on `name` when another profile (not `except`) has `name` in any case.
async fn check_name_free(
    conn: &mut AnyConnection,
    name: &str,
    except: i64,
) -> Result<(), StoreError> {
    xact_lock(conn, PROFILE_NAME_LOCK).await?;
    let taken =
        sqlx::query("SELECT id FROM boot_profiles WHERE LOWER(name) = LOWER($1) AND id <> $2")
            .bind(name)
            .bind(except)
            .fetch_optional(&mut *conn)
            .await?;
    if taken.is_some() {
        return Err(StoreError::Conflict {
            field: "name".to_owned(),
            message: format!(
                "a boot profile named `{name}` already exists (names are compared ignoring \
                 case): choose another name"
            ),
        });
    }
    Ok(())
}

/// Creates a profile (call inside a write transaction).
///
/// # Errors
/// The name is taken (409 `name`); the site is gone (400 `site`); the store failed.
pub async fn create(
    conn: &mut AnyConnection,
    values: &BootProfileValues,
    now_ms: i64,
) -> Result<BootProfile, StoreError> {
    check_name_free(conn, &values.name, 0).await?;
    let sql = format!(
        "INSERT INTO boot_profiles (name, site_id, description, {}, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) RETURNING id",
        FILE_COLUMNS.join(", ")
    );
    let mut q = sqlx::query(&sql)
        .bind(values.name.as_str())
        .bind(values.site_id)
        .bind(values.description.as_str());
    for file in &values.files {
        q = q.bind(file.as_deref());
    }
    let row = q
        .bind(now_ms)
        .fetch_one(&mut *conn)
        .await
        .map_err(site_fk)?;
    get(conn, row.try_get(0)?).await
}

/// Replaces the writable fields of profile `id` (call inside a write transaction).
///
/// # Errors
/// No such profile (404); the name is taken (409 `name`); the site is gone (400 `site`); the
/// store failed.
pub async fn update(
    conn: &mut AnyConnection,
    id: i64,
    values: &BootProfileValues,
    now_ms: i64,
) -> Result<BootProfile, StoreError> {
    check_name_free(conn, &values.name, id).await?;
    let sets: Vec<String> = FILE_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", i + 4))
        .collect();
    let sql = format!(
        "UPDATE boot_profiles SET name = $1, site_id = $2, description = $3, {}, \
         updated_at = $13 WHERE id = $14",
        sets.join(", ")
    );
    let mut q = sqlx::query(&sql)
        .bind(values.name.as_str())
        .bind(values.site_id)
        .bind(values.description.as_str());
    for file in &values.files {
        q = q.bind(file.as_deref());
    }
    let done = q
        .bind(now_ms)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(site_fk)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("boot profile {id}")));
    }
    get(conn, id).await
}

/// Deletes profile `id` (machines that named it fall back to their subnet's profile).
///
/// # Errors
/// No such profile (404); the store failed.
pub async fn delete(conn: &mut AnyConnection, id: i64) -> Result<(), StoreError> {
    let done = sqlx::query("DELETE FROM boot_profiles WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("boot profile {id}")));
    }
    Ok(())
}
