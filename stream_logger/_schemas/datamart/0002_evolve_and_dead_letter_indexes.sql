-- stream-logger datamart, migration 0002: per-subscription schema evolution switch; dead-letter look-ups.
-- Runs with search_path set to the datamart's schema, inside one transaction; do not qualify names here.

-- evolve = false: fields a record adds later go to the payload table's "extra" JSON column, not to new columns.
ALTER TABLE subscriptions ADD COLUMN evolve boolean NOT NULL DEFAULT true;

-- "What failed lately" and "what failed for this subscription" are the two questions asked of dead letters.
CREATE INDEX dead_letters_failed_at_idx ON dead_letters (failed_at DESC);
CREATE INDEX dead_letters_subscription_idx ON dead_letters (subscription_id, failed_at DESC);
