CREATE TABLE IF NOT EXISTS public.vocabsync_trigger_failures (
    table_name text PRIMARY KEY,
    failures bigint NOT NULL DEFAULT 0,
    last_failure_at timestamptz,
    last_error text
);
