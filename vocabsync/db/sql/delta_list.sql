                        nullif(pg_catalog.to_json(ARRAY(
                            SELECT DISTINCT v.{{column}}::text COLLATE "C" FROM {{transition}} AS v
                            WHERE pg_catalog.btrim(v.{{column}}::text, E' \t\r\n') <> ''
                            LIMIT {{max_values}}))::text, '[]')
