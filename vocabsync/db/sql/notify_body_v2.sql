BEGIN
    BEGIN
        PERFORM pg_catalog.pg_notify({{channel}}, TG_TABLE_NAME);
    EXCEPTION WHEN OTHERS THEN
        -- A failed notify must never fail the write: warn, count it and carry on.
        RAISE WARNING 'vocabsync: failed to notify vocabulary change on %: %',
            TG_TABLE_NAME, SQLERRM;
        BEGIN
            INSERT INTO public.vocabsync_trigger_failures AS f
                (table_name, failures, last_failure_at, last_error)
            VALUES (TG_TABLE_NAME, 1, pg_catalog.now(), SQLERRM)
            ON CONFLICT (table_name) DO UPDATE
                SET failures = f.failures + 1,
                    last_failure_at = excluded.last_failure_at,
                    last_error = excluded.last_error;
        EXCEPTION WHEN OTHERS THEN
            -- Nor may counting it (no table, no privilege): the WARNING above is the record.
            NULL;
        END;
    END;
    RETURN NULL;
END;
