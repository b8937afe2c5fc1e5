        WHEN {{table}} THEN
            head := {{head}};
            guc := 'vocabsync.delta_{{index}}_';
            IF TG_LEVEL = 'STATEMENT' AND TG_OP = 'INSERT' THEN
                SELECT CASE WHEN EXISTS (SELECT FROM vocabsync_new OFFSET 1) THEN 2 ELSE 1 END,
                       nullif(pg_catalog.concat_ws(',',{{row_listing}}), '')
                INTO n, listing
                FROM vocabsync_new AS r LIMIT 1;
            ELSIF TG_LEVEL = 'STATEMENT' AND TG_OP = 'DELETE' THEN
                SELECT CASE WHEN EXISTS (SELECT FROM vocabsync_old OFFSET 1) THEN 2 ELSE 1 END,
                       nullif(pg_catalog.concat_ws(',',{{row_listing}}), '')
                INTO n, listing
                FROM vocabsync_old AS r LIMIT 1;
            END IF;
