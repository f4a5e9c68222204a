-- The heartbeat interval each worker was given (Welcome); it is shown `inactive` after three
-- intervals without one. Workers of the original HTTP API heartbeat every 10 s.
ALTER TABLE workers ADD COLUMN heartbeat_interval_ms BIGINT NOT NULL DEFAULT 10000;
