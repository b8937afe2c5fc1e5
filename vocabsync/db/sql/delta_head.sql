        WHEN {{table}} THEN
            -- INSERT or DELETE of one row, the usual write: its values as they are, in one query
            -- (each PL/pgSQL statement costs), unless they do not fit, the transaction has sent
            -- too many, or they are all NULL or blank; FOUND says it notified.
            IF TG_OP = 'INSERT' THEN
{{one_inserted}}
            ELSIF TG_OP = 'DELETE' THEN
{{one_deleted}}
            END IF;
            -- Everything else: the table's names, and for an INSERT or DELETE the number of rows
            -- (2 for several) and the listing of the first.
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
