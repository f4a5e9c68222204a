//! Boot profiles: `/api/boot-profiles` (list, filter `site`; create) and
//! `/api/boot-profiles/{id}` (read, replace, change, delete), where `{id}` is a profile's id or
//! its name. A profile names the boot file for each firmware type, as the edge daemon's
//! `[[boot_profile]]`, and belongs to one site or (without a site) to all.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::AnyConnection;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::page::Page;
use crate::api::sites::{
    Fields, commit, page_request, present, read_conn, resolve_site, site_filter,
};
use crate::auth::{AdminUser, AuthUser};
use crate::db::now_ms;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, Problem};
use crate::state::AppState;
use crate::store::boot_profiles::{self, BootProfile, BootProfileValues, FILE_COLUMNS};

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_profiles, create_profile))
        .routes(routes!(
            get_profile,
            put_profile,
            patch_profile,
            delete_profile
        ))
}

/// Longest boot-file path, HTTP boot URL or iPXE script (bytes): what DHCP carries.
pub const MAX_BOOT_FILE: usize = 255;
/// Longest kernel or initrd URL (bytes; they go into the iPXE script, not into DHCP).
pub const MAX_SCRIPT_URL: usize = 1024;
/// Longest kernel command line (bytes).
pub const MAX_CMDLINE: usize = ims_proto::MAX_CMDLINE_LEN;

/// How a boot-file field may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    /// A path under the TFTP/HTTP root.
    Path,
    /// An `http://` or `https://` URL.
    HttpUrl,
    /// A path, or an `http`, `https` or `tftp` URL of at most `max_url` bytes.
    PathOrUrl { max_url: usize },
}

/// The fields that can boot a machine on their own.
const BOOTING: [&str; 6] = [
    "bios",
    "uefi_x64",
    "uefi_arm64",
    "http",
    "ipxe_script",
    "kernel",
];

fn kind_of(column: &str) -> FileKind {
    match column {
        "http" | "http_arm64" => FileKind::HttpUrl,
        "ipxe_script" => FileKind::PathOrUrl {
            max_url: MAX_BOOT_FILE,
        },
        "kernel" | "initrd" => FileKind::PathOrUrl {
            max_url: MAX_SCRIPT_URL,
        },
        _ => FileKind::Path,
    }
}

/// A path under the TFTP/HTTP root: at most 255 bytes, no `..` segment (NUL and other control
/// characters are refused earlier).
fn check_path(value: &str) -> Result<(), String> {
    if value.len() > MAX_BOOT_FILE {
        return Err(format!(
            "is {} bytes long: a path under the root may have at most {MAX_BOOT_FILE}",
            value.len()
        ));
    }
    if value.split(['/', '\\']).any(|segment| segment == "..") {
        return Err(format!(
            "`{value}` has a `..` segment: give a path under the TFTP/HTTP root such as \
             `ipxe/undionly.kpxe`"
        ));
    }
    Ok(())
}

/// A URL with one of `schemes`, a host, no whitespace, at most `max` bytes.
fn check_url(value: &str, schemes: &[&str], max: usize) -> Result<(), String> {
    let accepted = schemes
        .iter()
        .map(|s| format!("{s}://"))
        .collect::<Vec<_>>()
        .join(" or ");
    let rest = schemes.iter().find_map(|s| {
        value
            .get(..s.len() + 3)
            .filter(|p| p.eq_ignore_ascii_case(&format!("{s}://")))
            .map(|_| &value[s.len() + 3..])
    });
    let Some(rest) = rest else {
        return Err(format!(
            "`{value}` is not a URL: give one starting with {accepted}, such as \
             `http://10.77.0.1:8080/boot.efi`"
        ));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || value.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{value}` is not a usable URL: it needs a host and no spaces, such as \
             `http://10.77.0.1:8080/boot.efi`"
        ));
    }
    if value.len() > max {
        return Err(format!(
            "is {} bytes long: at most {max} are accepted",
            value.len()
        ));
    }
    Ok(())
}

fn check_file(column: &str, value: &str) -> Result<(), String> {
    match kind_of(column) {
        FileKind::Path => check_path(value),
        FileKind::HttpUrl => check_url(value, &["http", "https"], MAX_BOOT_FILE),
        FileKind::PathOrUrl { max_url } => {
            if value.contains("://") {
                check_url(value, &["http", "https", "tftp"], max_url)
            } else {
                check_path(value)
            }
        }
    }
}

/// A profile to create or replace (PUT), or changes to one (PATCH: absent fields stay; null
/// clears an optional field).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BootProfileInput {
    /// 1–63 letters, digits, `.`, `_` or `-`, starting with a letter or digit, not all digits;
    /// unique ignoring case. Required for POST and PUT.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String)]
    name: Option<Value>,
    /// The site's id or name; null (the default) makes the profile global.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    site: Option<Value>,
    /// Free text.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    description: Option<Value>,
    /// BIOS PXE boot file: a path under the TFTP root (≤ 255 bytes, no `..`).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    bios: Option<Value>,
    /// UEFI x64 PXE boot file (a path, as `bios`).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    uefi_x64: Option<Value>,
    /// UEFI arm64 PXE boot file (a path, as `bios`).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    uefi_arm64: Option<Value>,
    /// UEFI HTTP boot: an `http://` or `https://` URL (≤ 255 bytes).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    http: Option<Value>,
    /// UEFI arm64 HTTP boot URL (as `http`).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    http_arm64: Option<Value>,
    /// What iPXE gets: a path or an `http`/`https`/`tftp` URL (≤ 255 bytes).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    ipxe_script: Option<Value>,
    /// Kernel for the per-machine iPXE script: a path or a URL (≤ 1024 bytes).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    kernel: Option<Value>,
    /// Initrd (as `kernel`; needs `kernel`).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    initrd: Option<Value>,
    /// Kernel command line: one line, ≤ 2048 bytes, x86 Linux's limit (needs `kernel`).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    cmdline: Option<Value>,
}

/// Validates a profile body (laid over `base` for PATCH) and resolves its site.
async fn profile_values(
    conn: &mut AnyConnection,
    base: Option<&BootProfile>,
    input: &BootProfileInput,
) -> Result<BootProfileValues, ApiError> {
    let mut f = Fields::merge(base, input);
    let name = f.name("name");
    let site = f.site("site", false);
    let description = f.description();
    let mut files: [Option<String>; 9] = Default::default();
    for (slot, column) in files.iter_mut().zip(FILE_COLUMNS) {
        let max = if column == "cmdline" {
            MAX_CMDLINE
        } else {
            MAX_SCRIPT_URL
        };
        let Some(value) = f.opt_text(column, max, false) else {
            continue;
        };
        if column != "cmdline" {
            if let Err(message) = check_file(column, &value) {
                f.error(column, message);
                continue;
            }
        }
        *slot = Some(value);
    }
    let set = |column: &str| {
        FILE_COLUMNS
            .iter()
            .position(|c| *c == column)
            .is_some_and(|i| files[i].is_some())
    };
    let invalid = |f: &Fields| BOOTING.iter().any(|c| f.has_error(c));
    if !BOOTING.iter().any(|c| set(c)) && !invalid(&f) {
        f.error(
            "bios",
            "a boot profile must boot something: set at least one of bios, uefi_x64, \
             uefi_arm64, http, ipxe_script or kernel",
        );
    }
    if !set("kernel") && !f.has_error("kernel") {
        for column in ["initrd", "cmdline"] {
            if set(column) {
                f.error(
                    column,
                    "is set without a kernel: add `kernel` to the profile or remove it",
                );
            }
        }
    }
    let site_id = resolve_site(&mut f, conn, "site", site.as_deref()).await?;
    f.finish()?;
    Ok(BootProfileValues {
        name,
        site_id,
        description,
        files,
    })
}

/// Filters and pagination of the profile list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct BootProfileQuery {
    /// Page number, from 1 (default 1).
    page: Option<u32>,
    /// Items per page, 1–10000 (default 100).
    page_size: Option<u32>,
    /// Only the profiles of this site (id or name).
    site: Option<String>,
}

/// The id of the profile `key` (id or name) names, or 404.
async fn profile_id(conn: &mut AnyConnection, key: &str) -> Result<i64, ApiError> {
    boot_profiles::find_id(conn, key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("boot profile `{key}`")))
}

/// List boot profiles.
#[utoipa::path(get, path = "/api/boot-profiles", tag = "boot-profiles", params(BootProfileQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of boot profiles, ordered by id", body = Page<BootProfile>),
        (status = 400, description = "Invalid page parameters or unknown site", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
    ))]
async fn list_profiles(
    _: AuthUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<BootProfileQuery>,
) -> Result<Json<Page<BootProfile>>, ApiError> {
    let page = page_request(q.page, q.page_size)?;
    let mut conn = read_conn(&state).await?;
    let site = site_filter(&mut conn, q.site.as_deref()).await?;
    let (count, list) = boot_profiles::list(&mut conn, site, page).await?;
    Ok(Json(Page::new(page, count, list)))
}

/// Create a boot profile.
#[utoipa::path(post, path = "/api/boot-profiles", tag = "boot-profiles",
    request_body = BootProfileInput,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = BootProfile),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 409, description = "The name is taken (field `name`)", body = Problem),
    ))]
async fn create_profile(
    _: AdminUser,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<BootProfileInput>,
) -> Result<(StatusCode, Json<BootProfile>), ApiError> {
    let mut tx = state.db.begin_write().await?;
    let values = profile_values(&mut tx, None, &input).await?;
    let profile = boot_profiles::create(&mut tx, &values, now_ms()).await?;
    commit(tx).await?;
    Ok((StatusCode::CREATED, Json(profile)))
}

/// Read a boot profile.
#[utoipa::path(get, path = "/api/boot-profiles/{id}", tag = "boot-profiles",
    params(("id" = String, Path, description = "Profile id or name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The profile", body = BootProfile),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 404, description = "No such profile", body = Problem),
    ))]
async fn get_profile(
    _: AuthUser,
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<BootProfile>, ApiError> {
    let mut conn = read_conn(&state).await?;
    let id = profile_id(&mut conn, &key).await?;
    Ok(Json(boot_profiles::get(&mut conn, id).await?))
}

/// Shared by PUT and PATCH: `patch` lays the input over the stored profile.
async fn write_profile(
    state: &AppState,
    key: &str,
    input: &BootProfileInput,
    patch: bool,
) -> Result<Json<BootProfile>, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let id = profile_id(&mut tx, key).await?;
    let current = if patch {
        Some(boot_profiles::get(&mut tx, id).await?)
    } else {
        None
    };
    let values = profile_values(&mut tx, current.as_ref(), input).await?;
    let profile = boot_profiles::update(&mut tx, id, &values, now_ms()).await?;
    commit(tx).await?;
    Ok(Json(profile))
}

/// Replace a boot profile (absent optional fields are cleared).
#[utoipa::path(put, path = "/api/boot-profiles/{id}", tag = "boot-profiles",
    params(("id" = String, Path, description = "Profile id or name")),
    request_body = BootProfileInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The replaced profile", body = BootProfile),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such profile", body = Problem),
        (status = 409, description = "The name is taken (field `name`)", body = Problem),
    ))]
async fn put_profile(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
    ApiJson(input): ApiJson<BootProfileInput>,
) -> Result<Json<BootProfile>, ApiError> {
    write_profile(&state, &key, &input, false).await
}

/// Change a boot profile (absent fields stay; null clears an optional one).
#[utoipa::path(patch, path = "/api/boot-profiles/{id}", tag = "boot-profiles",
    params(("id" = String, Path, description = "Profile id or name")),
    request_body = BootProfileInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The changed profile", body = BootProfile),
        (status = 400, description = "Invalid fields", body = Problem),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such profile", body = Problem),
        (status = 409, description = "The name is taken (field `name`)", body = Problem),
    ))]
async fn patch_profile(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
    ApiJson(input): ApiJson<BootProfileInput>,
) -> Result<Json<BootProfile>, ApiError> {
    write_profile(&state, &key, &input, true).await
}

/// Delete a boot profile (machines that named it lose their profile).
#[utoipa::path(delete, path = "/api/boot-profiles/{id}", tag = "boot-profiles",
    params(("id" = String, Path, description = "Profile id or name")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted; machines that named it have no profile now"),
        (status = 401, description = "Not logged in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No such profile", body = Problem),
    ))]
async fn delete_profile(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let id = profile_id(&mut tx, &key).await?;
    boot_profiles::delete(&mut tx, id).await?;
    commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_urls() {
        assert!(check_file("bios", "ipxe/undionly.kpxe").is_ok());
        assert!(check_file("bios", "/pxelinux.0").is_ok());
        assert!(check_file("bios", "a/../../etc/shadow").is_err());
        assert!(check_file("bios", "..\\x").is_err());
        assert!(check_file("bios", &"a".repeat(256)).is_err());
        assert!(check_file("http", "https://10.0.0.1/boot.efi").is_ok());
        assert!(check_file("http", "HTTP://h/x").is_ok());
        assert!(check_file("http", "boot.efi").is_err());
        assert!(check_file("http", "http:///x").is_err());
        assert!(check_file("http", "ftp://h/x").is_err());
        assert!(check_file("ipxe_script", "tftp://10.0.0.1/boot.ipxe").is_ok());
        assert!(check_file("ipxe_script", "boot.ipxe").is_ok());
        assert!(check_file("kernel", "gopher://h/vmlinuz").is_err());
        let long_url = format!("http://h/{}", "k".repeat(600));
        assert!(check_file("kernel", &long_url).is_ok());
        assert!(check_file("ipxe_script", &long_url).is_err());
    }
}
