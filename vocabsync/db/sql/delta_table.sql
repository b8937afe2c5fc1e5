        WHEN {{table}} THEN
            cols := {{columns}};
            keys := {{keys}};
            head := {{head}};
            guc := 'vocabsync.delta_{{index}}_';
            IF TG_LEVEL = 'ROW' THEN
                olds := ARRAY[{{old_texts}}];
                news := ARRAY[{{new_texts}}];
            ELSIF TG_OP = 'INSERT' THEN
                SELECT ARRAY[{{row_texts}}], (SELECT count(*) FROM vocabsync_new),
                       nullif(pg_catalog.concat_ws(',',{{row_listing}}), '')
                INTO news, n, listing
                FROM vocabsync_new AS r LIMIT 1;
                IF n > 1 THEN  -- several rows: each value once, and no more than can be sent
                    listing := NULL;
                    lists := ARRAY[
{{inserted_values}}];
                END IF;
            ELSIF TG_OP = 'DELETE' THEN
                SELECT ARRAY[{{row_texts}}], (SELECT count(*) FROM vocabsync_old),
                       nullif(pg_catalog.concat_ws(',',{{row_listing}}), '')
                INTO news, n, listing
                FROM vocabsync_old AS r LIMIT 1;
                IF n > 1 THEN
                    listing := NULL;
                    lists := ARRAY[
{{deleted_values}}];
                END IF;
            END IF;
