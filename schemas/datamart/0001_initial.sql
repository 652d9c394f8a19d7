-- stream-logger datamart, migration 0001: the fixed tables.
-- Runs with search_path set to the datamart's schema, inside one transaction; do not qualify names here.

-- Records that could not be stored: the raw bytes as received, so a fixed record can be re-driven.
CREATE TABLE dead_letters (
    id bigserial PRIMARY KEY,
    topic text NOT NULL,
    "partition" integer NOT NULL,
    "offset" bigint NOT NULL,
    key bytea,
    value bytea,
    error_code text NOT NULL CHECK (error_code IN (
        'empty_message', 'too_large', 'malformed_json', 'unsupported_version', 'invalid_record',
        'unknown_subscription', 'type_conflict', 'unstorable_value'
    )),
    detail text NOT NULL,
    subscription_id text,
    failed_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, "partition", "offset")
);

-- The next offset to read, per consumer group, topic and partition; written in the same transaction as the rows.
CREATE TABLE consumer_offsets (
    group_id text NOT NULL,
    topic text NOT NULL,
    "partition" integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, "partition")
);

-- One row per monitored deployment. fields: [{"name", "column", "role", "type"}, ...], the mapping from the
-- record's field names to the payload table's columns.
CREATE TABLE subscriptions (
    subscription_id text PRIMARY KEY,
    table_name text NOT NULL UNIQUE,
    deployment_id text,
    asset_revision text,
    fields jsonb NOT NULL DEFAULT '[]'::jsonb,
    auto_registered boolean NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
