DECLARE
    system_id text := '';
    timeline text := '';
BEGIN
    -- The cluster: pg_control's system identifier (initdb draws it; a physical copy keeps it).
    BEGIN
        SELECT c.system_identifier::text INTO system_id FROM pg_catalog.pg_control_system() AS c;
    EXCEPTION WHEN OTHERS THEN  -- not allowed (a provider revoked it): go without
        system_id := '';
    END;
    -- Its history: the timeline, which promotion and point-in-time recovery increment.
    BEGIN
        IF pg_catalog.pg_is_in_recovery() THEN
            SELECT c.timeline_id::text INTO timeline FROM pg_catalog.pg_control_checkpoint() AS c;
        ELSE
            timeline := pg_catalog.int4(('x' || pg_catalog.substr(
                pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32))::text;
        END IF;
    EXCEPTION WHEN OTHERS THEN  -- not allowed (a provider revoked it): go without
        timeline := '';
    END;
    -- The database (another one in the same cluster, or a copy made with CREATE DATABASE), and
    -- this function: a restored dump re-creates it with a new OID; its comment holds a random
    -- generation drawn when it was first created.
    RETURN pg_catalog.concat_ws('/',
        system_id,
        timeline,
        (SELECT d.oid FROM pg_catalog.pg_database AS d
         WHERE d.datname = pg_catalog.current_database()),
        'public.vocabsync_database_identity()'::pg_catalog.regprocedure::pg_catalog.oid,
        coalesce(pg_catalog.obj_description(
            'public.vocabsync_database_identity()'::pg_catalog.regprocedure, 'pg_proc'), ''));
END;
