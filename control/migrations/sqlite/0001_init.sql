-- ims-control schema, SQLite flavour. Keep in step with ../postgres/0001_init.sql:
-- same tables, columns, constraints and constraint names; only types and identity differ.
-- Times are Unix milliseconds (BIGINT); booleans are BIGINT 0/1 (portable through sqlx::Any).

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL CONSTRAINT users_username_key UNIQUE,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE sites (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT   NOT NULL CONSTRAINT sites_name_key UNIQUE,
    description TEXT   NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE boot_profiles (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT   NOT NULL CONSTRAINT boot_profiles_name_key UNIQUE,
    site_id     BIGINT REFERENCES sites(id) ON DELETE CASCADE,
    description TEXT   NOT NULL DEFAULT '',
    bios        TEXT,
    uefi_x64    TEXT,
    uefi_arm64  TEXT,
    http        TEXT,
    http_arm64  TEXT,
    ipxe_script TEXT,
    kernel      TEXT,
    initrd      TEXT,
    cmdline     TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE clusters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT   NOT NULL CONSTRAINT clusters_name_key UNIQUE,
    description TEXT   NOT NULL DEFAULT '',
    status      TEXT   NOT NULL,
    health      TEXT   NOT NULL,
    site_id     BIGINT REFERENCES sites(id) ON DELETE SET NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX clusters_site_idx ON clusters(site_id);

CREATE TABLE machines (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster_id      BIGINT NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    hostname        TEXT   NOT NULL,
    ip              TEXT   CONSTRAINT machines_ip_key UNIQUE,
    mac             TEXT   NOT NULL CONSTRAINT machines_mac_key UNIQUE,
    cpu_cores       BIGINT NOT NULL DEFAULT 0,
    role            TEXT   NOT NULL,
    os_type         TEXT   NOT NULL,
    status          TEXT   NOT NULL,
    health          TEXT   NOT NULL,
    boot_profile_id BIGINT REFERENCES boot_profiles(id) ON DELETE SET NULL,
    netboot         BIGINT NOT NULL DEFAULT 1,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX machines_cluster_idx ON machines(cluster_id);
CREATE INDEX machines_status_idx ON machines(status);

CREATE TABLE machine_metrics (
    machine_id       BIGINT PRIMARY KEY REFERENCES machines(id) ON DELETE CASCADE,
    cpu_usage        REAL   NOT NULL DEFAULT 0,
    cpu_cores        BIGINT NOT NULL DEFAULT 0,
    memory_used      REAL   NOT NULL DEFAULT 0,
    memory_total     REAL   NOT NULL DEFAULT 0,
    memory_usage     REAL   NOT NULL DEFAULT 0,
    disk_used        REAL   NOT NULL DEFAULT 0,
    disk_total       REAL   NOT NULL DEFAULT 0,
    disk_usage       REAL   NOT NULL DEFAULT 0,
    network_incoming REAL   NOT NULL DEFAULT 0,
    network_outgoing REAL   NOT NULL DEFAULT 0,
    timestamp        BIGINT NOT NULL
);

CREATE TABLE machine_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    machine_id BIGINT REFERENCES machines(id) ON DELETE CASCADE,
    mac        TEXT   NOT NULL,
    worker_id  TEXT,
    event_id   TEXT   CONSTRAINT machine_events_event_id_key UNIQUE,
    kind       TEXT   NOT NULL,
    message    TEXT   NOT NULL DEFAULT '',
    detail     TEXT   NOT NULL DEFAULT '{}',
    at         BIGINT NOT NULL
);
CREATE INDEX machine_events_machine_idx ON machine_events(machine_id, at);
CREATE INDEX machine_events_mac_idx ON machine_events(mac, at);

CREATE TABLE ip_pools (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id     BIGINT REFERENCES sites(id) ON DELETE CASCADE,
    cidr        TEXT   NOT NULL,
    gateway     TEXT,
    range_start TEXT,
    range_end   TEXT,
    dns         TEXT   NOT NULL DEFAULT '',
    lease_time  BIGINT NOT NULL DEFAULT 3600,
    description TEXT   NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    CONSTRAINT ip_pools_site_cidr_key UNIQUE (site_id, cidr)
);

CREATE TABLE dhcp_configs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id        BIGINT NOT NULL CONSTRAINT dhcp_configs_site_id_key UNIQUE REFERENCES sites(id) ON DELETE CASCADE,
    enabled        BIGINT NOT NULL DEFAULT 1,
    mode           TEXT   NOT NULL DEFAULT 'server',
    bind_address   TEXT   NOT NULL DEFAULT '0.0.0.0',
    bind_interface TEXT   NOT NULL DEFAULT '',
    tftp_ip        TEXT,
    tftp_port      BIGINT NOT NULL DEFAULT 69,
    lease_time     BIGINT NOT NULL DEFAULT 3600,
    allow_unknown  BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE tftp_configs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id        BIGINT NOT NULL CONSTRAINT tftp_configs_site_id_key UNIQUE REFERENCES sites(id) ON DELETE CASCADE,
    enabled        BIGINT NOT NULL DEFAULT 1,
    bind_address   TEXT   NOT NULL DEFAULT '0.0.0.0',
    bind_port      BIGINT NOT NULL DEFAULT 69,
    block_size     BIGINT NOT NULL DEFAULT 1468,
    max_windowsize BIGINT NOT NULL DEFAULT 64,
    max_transfers  BIGINT NOT NULL DEFAULT 256,
    root_directory TEXT   NOT NULL DEFAULT '/srv/netboot',
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE workers (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    worker_id      TEXT   NOT NULL CONSTRAINT workers_worker_id_key UNIQUE,
    site_id        BIGINT REFERENCES sites(id) ON DELETE SET NULL,
    cluster_id     BIGINT REFERENCES clusters(id) ON DELETE SET NULL,
    ip_address     TEXT,
    version        TEXT   NOT NULL DEFAULT '',
    status         TEXT   NOT NULL DEFAULT 'inactive',
    last_heartbeat BIGINT,
    services       TEXT   NOT NULL DEFAULT '{}',
    metrics        TEXT   NOT NULL DEFAULT '{}',
    last_error     TEXT,
    registered_at  BIGINT NOT NULL,
    revoked        BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE leases (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    worker_id     TEXT   NOT NULL,
    site_id       BIGINT REFERENCES sites(id) ON DELETE SET NULL,
    ip_address    TEXT   NOT NULL,
    mac_address   TEXT   NOT NULL,
    hostname      TEXT   NOT NULL DEFAULT '',
    lease_start   BIGINT NOT NULL,
    lease_end     BIGINT NOT NULL,
    binding_state TEXT   NOT NULL DEFAULT 'active',
    cidr          TEXT,
    gateway       TEXT,
    bootfile_url  TEXT,
    tftp_server   TEXT,
    updated_at    BIGINT NOT NULL,
    CONSTRAINT leases_ip_mac_key UNIQUE (ip_address, mac_address)
);
CREATE INDEX leases_mac_idx ON leases(mac_address);
