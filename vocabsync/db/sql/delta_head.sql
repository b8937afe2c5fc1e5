        WHEN {{table}} THEN
            -- INSERT or DELETE of one row, the usual write: its values as they are, in one query
            -- (each PL/pgSQL statement costs), unless they do not fit, the transaction has sent
            -- too many, or they are all NULL or blank; FOUND says it notified.
            IF TG_OP = 'INSERT' THEN
                PERFORM pg_catalog.pg_notify({{channel}}, s.payload),
                        pg_catalog.set_config({{counter}}, (s.sent + 1)::text, true)
                FROM (SELECT {{payload_head}} || nullif(pg_catalog.concat_ws(',',{{row_listing}}), '') || '}}' AS payload,
                             coalesce(nullif(pg_catalog.current_setting({{counter}}, true), ''),
                                      '0')::integer AS sent
                      FROM vocabsync_new AS r LIMIT 1) AS s
                WHERE NOT EXISTS (SELECT FROM vocabsync_new OFFSET 1)
                  AND s.sent < {{max_deltas}}
                  AND pg_catalog.octet_length(s.payload) <= {{max_payload_bytes}};
                IF FOUND THEN
                    RETURN NULL;
                END IF;
            ELSIF TG_OP = 'DELETE' THEN
                PERFORM pg_catalog.pg_notify({{channel}}, s.payload),
                        pg_catalog.set_config({{counter}}, (s.sent + 1)::text, true)
                FROM (SELECT {{payload_head}} || nullif(pg_catalog.concat_ws(',',{{row_listing}}), '') || '}}' AS payload,
                             coalesce(nullif(pg_catalog.current_setting({{counter}}, true), ''),
                                      '0')::integer AS sent
                      FROM vocabsync_old AS r LIMIT 1) AS s
                WHERE NOT EXISTS (SELECT FROM vocabsync_old OFFSET 1)
                  AND s.sent < {{max_deltas}}
                  AND pg_catalog.octet_length(s.payload) <= {{max_payload_bytes}};
                IF FOUND THEN
                    RETURN NULL;
                END IF;
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
