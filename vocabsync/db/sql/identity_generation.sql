DO $generation$
BEGIN
    IF pg_catalog.obj_description(
            'public.vocabsync_database_identity()'::pg_catalog.regprocedure, 'pg_proc')
       IS NULL THEN
        EXECUTE pg_catalog.format(
            'COMMENT ON FUNCTION public.vocabsync_database_identity() IS %L',
            'vocabsync generation ' || pg_catalog.gen_random_uuid());
    END IF;
END;
$generation$;
