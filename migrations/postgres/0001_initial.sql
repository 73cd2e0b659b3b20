-- decentd on PostgreSQL, schema version 1.
--
-- Ids are decentd's time-ordered 64-bit ids (they fit a bigint until the year 2054). Each
-- record is kept whole as a jsonb document (`record`, the same serde fields as the sled
-- store's records and `decentd export`), beside the columns that queries search, sort or join
-- on. Derived columns are written in the same statement as the record.

CREATE TABLE meta (
    key text PRIMARY KEY,
    value jsonb NOT NULL
);

CREATE TABLE users (
    id bigint PRIMARY KEY,
    name_lower text NOT NULL UNIQUE,
    email_lower text,
    record jsonb NOT NULL
);
CREATE INDEX users_name_pattern ON users (name_lower text_pattern_ops);
CREATE INDEX users_email ON users (email_lower) WHERE email_lower IS NOT NULL;

CREATE TABLE sessions (
    key bytea PRIMARY KEY,
    user_id bigint NOT NULL,
    handle bigint NOT NULL,
    expires_ms bigint NOT NULL,
    record jsonb NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id, handle);
CREATE INDEX sessions_expiry ON sessions (expires_ms);

CREATE TABLE roles (
    id bigint PRIMARY KEY,
    record jsonb NOT NULL
);

CREATE TABLE channels (
    id bigint PRIMARY KEY,
    name_lower text NOT NULL UNIQUE,
    record jsonb NOT NULL
);

-- Deleted channels and users whose leftovers are still to be removed.
CREATE TABLE purges (
    kind text NOT NULL CHECK (kind IN ('channel', 'user')),
    id bigint NOT NULL,
    PRIMARY KEY (kind, id)
);

CREATE TABLE messages (
    id bigint PRIMARY KEY,
    channel_id bigint NOT NULL,
    pinned boolean NOT NULL DEFAULT false,
    record jsonb NOT NULL
);
CREATE UNIQUE INDEX messages_history ON messages (channel_id, id);
CREATE INDEX messages_pins ON messages (channel_id, id) WHERE pinned;

CREATE TABLE mentions (
    user_id bigint NOT NULL,
    message_id bigint NOT NULL,
    channel_id bigint NOT NULL,
    PRIMARY KEY (user_id, message_id)
);
CREATE INDEX mentions_message ON mentions (message_id);

CREATE TABLE read_state (
    channel_id bigint NOT NULL,
    user_id bigint NOT NULL,
    up_to bigint NOT NULL,
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX read_state_user ON read_state (user_id);

CREATE TABLE emotes (
    shortcode text PRIMARY KEY,
    record jsonb NOT NULL
);

CREATE TABLE plugins (
    name text PRIMARY KEY,
    record jsonb NOT NULL
);

CREATE TABLE plugin_kv (
    plugin text NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (plugin, key)
);

CREATE TABLE licenses (
    id bigint PRIMARY KEY,
    owner bigint NOT NULL,
    record jsonb NOT NULL
);
CREATE INDEX licenses_owner ON licenses (owner, id);

-- The SHA-256 of a license key. A revoked license's key stays, naming a license that is gone.
CREATE TABLE license_keys (
    key bytea PRIMARY KEY,
    license_id bigint NOT NULL
);

CREATE TABLE two_factor (
    user_id bigint PRIMARY KEY,
    record jsonb NOT NULL
);

CREATE TABLE reset_tokens (
    key bytea PRIMARY KEY,
    user_id bigint NOT NULL,
    expires_ms bigint NOT NULL,
    record jsonb NOT NULL
);
CREATE INDEX reset_tokens_user ON reset_tokens (user_id);

-- A conversation is (low, high): the smaller and the larger user id.
CREATE TABLE direct_messages (
    id bigint PRIMARY KEY,
    low bigint NOT NULL,
    high bigint NOT NULL,
    record jsonb NOT NULL
);
CREATE INDEX direct_messages_conversation ON direct_messages (low, high, id);

CREATE TABLE conversations (
    user_id bigint NOT NULL,
    other bigint NOT NULL,
    last_message bigint NOT NULL,
    PRIMARY KEY (user_id, other)
);

CREATE TABLE direct_read (
    user_id bigint NOT NULL,
    other bigint NOT NULL,
    up_to bigint NOT NULL,
    PRIMARY KEY (user_id, other)
);

CREATE TABLE dm_settings (
    user_id bigint PRIMARY KEY,
    record jsonb NOT NULL
);

-- Node numbers for ids: each starting node takes the next one (modulo 1024), so two nodes
-- never hand out the same id in the same millisecond.
CREATE SEQUENCE node_numbers;
