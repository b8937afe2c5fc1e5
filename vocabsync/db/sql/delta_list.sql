                    pg_catalog.to_json(ARRAY(
                        SELECT DISTINCT r.{{column}}::text COLLATE "C" FROM {{transition}} AS r
                        WHERE pg_catalog.btrim(r.{{column}}::text, E' \t\r\n') <> ''
                        LIMIT {{max_values}}))::text
