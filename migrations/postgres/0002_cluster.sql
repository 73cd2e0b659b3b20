-- decentd on PostgreSQL, schema version 2: what cluster nodes share beyond the data.
--
-- Cluster-wide numbers of permission changes. A node
-- that changes roles, user roles or channel overrides takes the next number and publishes the
-- change under it; every node applies changes in number order and reloads its permission
-- index from these tables when a number is missing.
CREATE SEQUENCE permission_changes;

-- The chatbox rate limit of each license, shared by every node its bots connect to: when the
-- license's next message may be sent (Unix milliseconds). Taken and moved in one transaction.
CREATE TABLE chatbox_slots (
    license_id bigint PRIMARY KEY,
    next_free_ms bigint NOT NULL
);
