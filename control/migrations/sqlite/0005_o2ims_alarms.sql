-- ims-control schema, SQLite flavour: O2ims infrastructure monitoring (alarms, alarm
-- subscriptions and their durable notification queue; issue 6). Keep in step with
-- ../postgres/0005_o2ims_alarms.sql.
--
-- settings keys added here:
--   o2ims_alarm_scan            lock row of the alarm evaluator: each pass updates it first, in
--                               the transaction that raises and clears alarms, so replicas
--                               sharing the database take turns.
--   o2ims_alarm_retention_days  AlarmServiceConfiguration.retentionPeriod (days, >= 1).
--   o2ims_alarm_extensions      AlarmServiceConfiguration.extensions (a JSON object).

-- Alarm event records. `definition` is the alarm definition's name (edge-down, …); the object
-- is (`object_kind`, `object_row`) with its O2ims id `object_id`. `open_key` is
-- "<definition>/<object_kind>/<object_row>" while the alarm is open and NULL once it is
-- cleared: the UNIQUE constraint keeps at most one open alarm per (definition, object).
-- `latch_key` is set (to the same text) when an operator clears an alarm whose condition
-- still holds, so it is not raised again until the condition has ended once.
CREATE TABLE o2ims_alarms (
    id              TEXT   PRIMARY KEY,
    definition      TEXT   NOT NULL,
    object_kind     TEXT   NOT NULL,
    object_row      BIGINT NOT NULL,
    object_id       TEXT   NOT NULL,
    severity        BIGINT NOT NULL,
    raised_at       BIGINT NOT NULL,
    changed_at      BIGINT NOT NULL,
    acknowledged    BIGINT NOT NULL DEFAULT 0,
    acknowledged_at BIGINT,
    cleared_at      BIGINT,
    details         TEXT   NOT NULL DEFAULT '{}',
    open_key        TEXT   CONSTRAINT o2ims_alarms_open_key_key UNIQUE,
    latch_key       TEXT   CONSTRAINT o2ims_alarms_latch_key_key UNIQUE
);
CREATE INDEX o2ims_alarms_cleared_idx ON o2ims_alarms(cleared_at);

-- Alarm subscriptions (AlarmSubscriptionInfo); `id` is the server-assigned UUID;
-- `event_filter` the accepted notificationEventTypes as a comma-separated list (NULL: all).
CREATE TABLE o2ims_alarm_subscriptions (
    id                       TEXT   PRIMARY KEY,
    consumer_subscription_id TEXT,
    callback                 TEXT   NOT NULL,
    filter                   TEXT,
    event_filter             TEXT,
    created_at               BIGINT NOT NULL
);

-- Alarm notifications waiting for delivery; a row is deleted once its callback answered 2xx.
CREATE TABLE o2ims_alarm_notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id TEXT   NOT NULL REFERENCES o2ims_alarm_subscriptions(id) ON DELETE CASCADE,
    body            TEXT   NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX o2ims_alarm_notifications_subscription_idx
    ON o2ims_alarm_notifications(subscription_id, id);

INSERT INTO settings (key, value) VALUES ('o2ims_alarm_scan', '0');
