-- ims-control schema, SQLite flavour: O2ims inventory subscriptions and their durable
-- notification queue (issue 6). Keep in step with ../postgres/0004_o2ims_subscriptions.sql.
--
-- settings key added here:
--   o2ims_change_scan  lock row of the change detector: each pass updates it first, in the
--                      transaction that diffs the inventory against o2ims_object_state, so
--                      replicas sharing the database take turns.

-- Inventory subscriptions (InventorySubscriptionInfo); `id` is the server-assigned UUID.
CREATE TABLE o2ims_subscriptions (
    id                       TEXT   PRIMARY KEY,
    consumer_subscription_id TEXT,
    callback                 TEXT   NOT NULL,
    filter                   TEXT,
    created_at               BIGINT NOT NULL
);

-- Notifications waiting for delivery; a row is deleted once its callback answered 2xx.
CREATE TABLE o2ims_notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id TEXT   NOT NULL REFERENCES o2ims_subscriptions(id) ON DELETE CASCADE,
    body            TEXT   NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX o2ims_notifications_subscription_idx ON o2ims_notifications(subscription_id, id);

-- The inventory objects as last seen by the change detector (kind: resource, resourcePool,
-- deploymentManager; json: the object as the API shows it).
CREATE TABLE o2ims_object_state (
    kind      TEXT NOT NULL,
    object_id TEXT NOT NULL,
    json      TEXT NOT NULL,
    PRIMARY KEY (kind, object_id)
);

INSERT INTO settings (key, value) VALUES ('o2ims_change_scan', '0');
