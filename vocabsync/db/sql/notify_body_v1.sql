BEGIN
    BEGIN
        PERFORM pg_catalog.pg_notify({{channel}}, TG_TABLE_NAME);
    EXCEPTION WHEN OTHERS THEN
        -- A failed notify must never fail the write: warn and carry on.
        RAISE WARNING 'vocabsync: failed to notify vocabulary change on %: %',
            TG_TABLE_NAME, SQLERRM;
    END;
    RETURN NULL;
END;
