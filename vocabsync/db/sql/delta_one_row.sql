                PERFORM pg_catalog.pg_notify({{channel}}, s.payload),
                        pg_catalog.set_config({{counter}}, (s.sent + 1)::text, true)
                FROM (SELECT {{payload_head}} || nullif(pg_catalog.concat_ws(',',{{row_listing}}), '') || '}}' AS payload,
                             coalesce(nullif(pg_catalog.current_setting({{counter}}, true), ''),
                                      '0')::integer AS sent
                      FROM {{transition}} AS r LIMIT 1) AS s
                WHERE NOT EXISTS (SELECT FROM {{transition}} OFFSET 1)
                  AND s.sent < {{max_deltas}}
                  AND pg_catalog.octet_length(s.payload) <= {{max_payload_bytes}};
                IF FOUND THEN
                    RETURN NULL;
                END IF;
