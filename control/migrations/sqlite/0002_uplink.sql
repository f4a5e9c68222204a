-- ims-control schema, SQLite flavour: the edge uplink (issue 5). Keep in step with
-- ../postgres/0002_uplink.sql: same tables, columns, constraints and constraint names, and
-- triggers with the same effect (SQLite has only row-level triggers; PostgreSQL uses one
-- statement-level trigger per table).
--
-- settings keys added here:
--   config_rev  a counter bumped by every INSERT/UPDATE/DELETE of machines, clusters,
--               boot_profiles, ip_pools and sites, in the writing transaction; uplink sessions
--               poll it (every replica sees it) and push what changed to the edges.
--   revoke_rev  a counter bumped by `ims-control worker revoke`; sessions re-check their
--               worker when it moves.
--   uplink_ca   the CA (certificate and key, PEM, JSON), created on first start.

-- One-time join tokens: only the SHA-256 of the secret is kept.
CREATE TABLE join_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    secret_sha256 TEXT   NOT NULL CONSTRAINT join_tokens_secret_sha256_key UNIQUE,
    site_id       BIGINT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT,
    worker_id     TEXT
);

-- Certificates issued to workers, by serial (lower-case hex), for revocation.
CREATE TABLE worker_certs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    worker_id  TEXT   NOT NULL REFERENCES workers(worker_id) ON DELETE CASCADE,
    serial     TEXT   NOT NULL CONSTRAINT worker_certs_serial_key UNIQUE,
    not_before BIGINT NOT NULL,
    not_after  BIGINT NOT NULL,
    issued_at  BIGINT NOT NULL,
    revoked    BIGINT NOT NULL DEFAULT 0,
    revoked_at BIGINT
);
CREATE INDEX worker_certs_worker_idx ON worker_certs(worker_id);

-- Events from the edges' outboxes, each (worker, outbox sequence number) recorded once.
CREATE TABLE edge_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    worker_id   TEXT   NOT NULL,
    seq         BIGINT NOT NULL,
    kind        TEXT   NOT NULL,
    at          BIGINT NOT NULL,
    detail      TEXT   NOT NULL DEFAULT '{}',
    received_at BIGINT NOT NULL,
    CONSTRAINT edge_events_worker_seq_key UNIQUE (worker_id, seq)
);

INSERT INTO settings (key, value) VALUES ('config_rev', '0');
INSERT INTO settings (key, value) VALUES ('revoke_rev', '0');

CREATE TRIGGER machines_config_rev_insert AFTER INSERT ON machines BEGIN
    UPDATE settings SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'config_rev';
END;
CREATE TRIGGER machines_config_rev_update AFTER UPDATE ON machines BEGIN
    UPDATE settings SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'config_rev';
END;
CREATE TRIGGER machines_config_rev_delete AFTER DELETE ON machines BEGIN
    UPDATE settings SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'config_rev';
END;

CREATE TRIGGER clusters_config_rev_insert AFTER INSERT ON clusters BEGIN
    UPDATE settings SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'config_rev';
END;
CREATE TRIGGER clusters_config_rev_update AFTER UPDATE ON clusters BEGIN
    UPDATE settings SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'config_rev';
END;
CREATE TRIGGER clusters_config_rev_delete AFTER DELETE ON clusters BEGIN
    UPDATE settings SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'config_rev';
END;

CREATE TRIGGER boot_profiles_config_rev_insert AFTER INSERT ON boot_profiles BEGIN
    UPDATE settings SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'config_rev';
END;
CREATE TRIGGER boot_profiles_config_rev_update AFTER UPDATE ON boot_profiles BEGIN
    UPDATE settings SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'config_rev';
END;
CREATE TRIGGER boot_profiles_config_rev_delete AFTER DELETE ON boot_profiles BEGIN
    UPDATE settings SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'config_rev';
END;

CREATE TRIGGER ip_pools_config_rev_insert AFTER INSERT ON ip_pools BEGIN
    UPDATE settings SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'config_rev';
END;
CREATE TRIGGER ip_pools_config_rev_update AFTER UPDATE ON ip_pools BEGIN
    UPDATE settings SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'config_rev';
END;
CREATE TRIGGER ip_pools_config_rev_delete AFTER DELETE ON ip_pools BEGIN
    UPDATE settings SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'config_rev';
END;

CREATE TRIGGER sites_config_rev_insert AFTER INSERT ON sites BEGIN
    UPDATE settings SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'config_rev';
END;
CREATE TRIGGER sites_config_rev_update AFTER UPDATE ON sites BEGIN
    UPDATE settings SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'config_rev';
END;
CREATE TRIGGER sites_config_rev_delete AFTER DELETE ON sites BEGIN
    UPDATE settings SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'config_rev';
END;
