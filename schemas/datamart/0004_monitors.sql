-- stream-logger datamart, migration 0004: monitor definitions and their measurements.
-- Runs with search_path set to the datamart's schema, inside one transaction; do not qualify names here.

-- A monitor of a subscription (fairness, quality, drift, traffic), as declared by `stream-logger monitor add`.
-- definition: the monitor's JSON object as given (validated); version counts its re-declarations.
CREATE TABLE monitors (
    subscription_id text NOT NULL,
    name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('fairness', 'quality', 'drift', 'traffic')),
    definition jsonb NOT NULL,
    version integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, name)
);

-- One row per metric of one evaluation of a monitor over a window [window_start, window_end). Evaluating a window
-- again replaces its rows. value is null when state says why there is none (too few records, no labels, ...).
CREATE TABLE measurements (
    subscription_id text NOT NULL,
    monitor text NOT NULL,
    metric text NOT NULL,
    value double precision,
    state text NOT NULL,
    threshold_min double precision,
    threshold_max double precision,
    breached boolean NOT NULL,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now(),
    details jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (subscription_id, monitor, metric, window_start, window_end)
);
CREATE INDEX measurements_latest_idx ON measurements (subscription_id, monitor, metric, window_end DESC);
