-- stream-logger datamart, migration 0003: the dead-letter reasons of the limits and of the last line of defence.
-- Runs with search_path set to the datamart's schema, inside one transaction; do not qualify names here.

ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_error_code_check;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_error_code_check CHECK (error_code IN (
    'empty_message', 'too_large', 'malformed_json', 'unsupported_version', 'invalid_record',
    'unknown_subscription', 'type_conflict', 'unstorable_value',
    'subscription_limit', 'timestamp_out_of_window', 'internal_error'
));
