-- decentd on PostgreSQL, schema version 2: cluster-wide numbers of permission changes. A node
-- that changes roles, user roles or channel overrides takes the next number and publishes the
-- change under it; every node applies changes in number order and reloads its permission
-- index from these tables when a number is missing.
CREATE SEQUENCE permission_changes;
