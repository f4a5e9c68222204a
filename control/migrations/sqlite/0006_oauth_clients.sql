-- ims-control schema, SQLite flavour: OAuth2 clients of the O2ims API (client-credentials
-- grant, issue 6). Keep in step with ../postgres/0006_oauth_clients.sql.
--
-- client_id   the client's name as given to `ims-control client add` (lower case), also its
--             OAuth2 client id
-- secret_hash argon2id PHC string of the client secret (the secret itself is never stored)
-- scopes      granted O2ims scopes, space-separated (`o2ims:read o2ims:subscribe`)
CREATE TABLE oauth_clients (
    client_id   TEXT   PRIMARY KEY,
    secret_hash TEXT   NOT NULL,
    scopes      TEXT   NOT NULL,
    description TEXT   NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
