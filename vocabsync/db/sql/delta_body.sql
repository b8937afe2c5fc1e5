DECLARE
    -- Set by the table's head and branch (TG_ARGV[0] is the table's name in VOCABSYNC_SOURCES):
    head text;               -- '{"t":"<table>"'
    guc text;                -- prefix of the table's transaction-local settings
    cols text[];             -- the table's vocabulary columns, in mapping order
    keys text[];             -- the same as JSON object keys: '"column":'
    olds text[];             -- UPDATE: the row's old text, per column
    news text[];             -- UPDATE: the row's new text; INSERT, DELETE of one row: its text
    n integer;               -- INSERT, DELETE: rows in the transition table, 2 for several
    -- Shared:
    lists text[];            -- per column, the values to list as a JSON array (NULL: none)
    listing text;            -- the "c" object's members: '"column":[...],...'
    seen text;
    item text;
    fresh text;
    sent integer;
    longest integer;
    parts text[];            -- '"column":["value",...]', one per listed column
    listed text[];           -- the listed columns, in the order of parts
    reload text[];           -- columns the bridge must reload in full
    payload text;
BEGIN
    BEGIN
        CASE TG_ARGV[0]
{{heads}}
        END CASE;
        IF n = 1 THEN
            -- INSERT or DELETE of one row that the head did not send: its values do not fit,
            -- or the transaction has sent too many (below), or there are none.
            IF listing IS NULL THEN
                RETURN NULL;  -- only NULL or blank values
            END IF;
        ELSIF n IS NULL AND TG_OP IN ('INSERT', 'DELETE') AND TG_LEVEL = 'STATEMENT' THEN
            RETURN NULL;  -- no row
        END IF;

        CASE TG_ARGV[0]
{{branches}}
        END CASE;
        parts := '{}';
        listed := '{}';
        reload := '{}';
        lists := coalesce(lists, '{}');

        IF TG_LEVEL = 'ROW' THEN
            -- An UPDATE changed this row's vocabulary text (the trigger's WHEN). List the old
            -- and new values of each changed column that the transaction has not listed yet:
            -- all its notifications are delivered together, at commit, so once is enough. The
            -- column's transaction-local setting holds what was listed, ',"v1","v2",' (JSON
            -- strings), or '!' once a reload of the column is on its way (the list grew too
            -- long, or too many notifications): then there is nothing more to say about it.
            FOR i IN 1 .. pg_catalog.array_length(cols, 1) LOOP
                CONTINUE WHEN olds[i] COLLATE "C" IS NOT DISTINCT FROM news[i];
                seen := coalesce(nullif(pg_catalog.current_setting(guc || i, true), ''), ',');
                CONTINUE WHEN seen = '!';
                fresh := NULL;
                IF pg_catalog.btrim(olds[i], E' \t\r\n') <> '' THEN  -- (NULL: not a term)
                    item := pg_catalog.to_json(olds[i])::text;
                    IF pg_catalog.strpos(seen, ',' || item || ',') = 0 THEN
                        seen := seen || item || ',';
                        fresh := item;
                    END IF;
                END IF;
                IF pg_catalog.btrim(news[i], E' \t\r\n') <> '' THEN
                    item := pg_catalog.to_json(news[i])::text;
                    IF pg_catalog.strpos(seen, ',' || item || ',') = 0 THEN
                        seen := seen || item || ',';
                        fresh := pg_catalog.concat_ws(',', fresh, item);
                    END IF;
                END IF;
                CONTINUE WHEN fresh IS NULL;
                IF pg_catalog.octet_length(seen) > {{max_list_bytes}} THEN
                    reload := reload || cols[i];
                ELSE
                    PERFORM pg_catalog.set_config(guc || i, seen, true);
                    lists[i] := '[' || fresh || ']';
                    listing := pg_catalog.concat_ws(',', listing, keys[i] || lists[i]);
                END IF;
            END LOOP;
        ELSIF TG_OP = 'TRUNCATE' THEN
            reload := cols;
        ELSIF n > 1 THEN
            -- INSERT or DELETE of several rows: the branch listed each column's values.
            FOR i IN 1 .. pg_catalog.array_length(cols, 1) LOOP
                CONTINUE WHEN lists[i] IS NULL;
                listing := pg_catalog.concat_ws(',', listing, keys[i] || lists[i]);
            END LOOP;
        END IF;
        -- (INSERT or DELETE of one row that did not fit: the branch read it into news.)

        IF listing IS NULL AND reload = '{}' THEN
            RETURN NULL;  -- nothing to say: only NULL or blank values, or said already
        ELSIF reload = '{}' AND n IS DISTINCT FROM 1 THEN
            -- The usual case: the values fit, and the transaction has not sent too many.
            payload := head || ',"c":{' || listing || '}}';
            sent := coalesce(nullif(pg_catalog.current_setting(guc || 'n', true), ''),
                             '0')::integer;
            IF pg_catalog.octet_length(payload) <= {{max_payload_bytes}}
               AND sent < {{max_deltas}} THEN
                PERFORM pg_catalog.pg_notify({{channel}}, payload);
                PERFORM pg_catalog.set_config(guc || 'n', (sent + 1)::text, true);
                RETURN NULL;
            END IF;
        END IF;

        IF n = 1 THEN
            lists := '{}';
            FOR i IN 1 .. pg_catalog.array_length(cols, 1) LOOP
                CONTINUE WHEN news[i] IS NULL OR pg_catalog.btrim(news[i], E' \t\r\n') = '';
                lists[i] := '[' || pg_catalog.to_json(news[i])::text || ']';
            END LOOP;
        END IF;
        FOR i IN 1 .. pg_catalog.array_length(cols, 1) LOOP
            CONTINUE WHEN lists[i] IS NULL OR cols[i] = ANY (reload);
            parts := parts || (keys[i] || lists[i]);
            listed := listed || cols[i];
        END LOOP;
        -- At most {{max_deltas}} notifications listing values per table and transaction; after
        -- that, reloads.
        sent := coalesce(nullif(pg_catalog.current_setting(guc || 'n', true), ''), '0')::integer;
        IF sent >= {{max_deltas}} THEN
            reload := reload || listed;
            parts := '{}';
            listed := '{}';
        END IF;
        LOOP
            payload := head
                || CASE WHEN parts = '{}' THEN ''
                        ELSE ',"c":{' || pg_catalog.array_to_string(parts, ',') || '}' END
                || CASE WHEN reload = '{}' THEN ''
                        ELSE ',"r":' || pg_catalog.to_json(ARRAY(
                            SELECT u.c FROM pg_catalog.unnest(cols) WITH ORDINALITY AS u (c, n)
                            WHERE u.c = ANY (reload) ORDER BY u.n))::text END
                || '}';
            EXIT WHEN pg_catalog.octet_length(payload) <= {{max_payload_bytes}};
            -- Too long for one notification: reload the column with the longest list instead.
            longest := (SELECT p.n FROM pg_catalog.unnest(parts) WITH ORDINALITY AS p (part, n)
                        ORDER BY pg_catalog.octet_length(p.part) DESC LIMIT 1);
            reload := reload || listed[longest];
            parts := parts[:longest - 1] || parts[longest + 1:];
            listed := listed[:longest - 1] || listed[longest + 1:];
        END LOOP;
        FOR i IN 1 .. pg_catalog.array_length(cols, 1) LOOP
            IF cols[i] = ANY (reload) THEN
                PERFORM pg_catalog.set_config(guc || i, '!', true);
            END IF;
        END LOOP;
        IF parts <> '{}' THEN
            PERFORM pg_catalog.set_config(guc || 'n', (sent + 1)::text, true);
        END IF;
        PERFORM pg_catalog.pg_notify({{channel}}, payload);
    EXCEPTION WHEN OTHERS THEN
        -- A failure must never fail the write: warn, count it, ask for a reload, carry on.
        RAISE WARNING 'vocabsync: failed to notify vocabulary change on %: %',
            TG_TABLE_NAME, SQLERRM;
        BEGIN
            INSERT INTO public.vocabsync_trigger_failures AS f
                (table_name, failures, last_failure_at, last_error)
            VALUES (TG_TABLE_NAME, 1, pg_catalog.now(), SQLERRM)
            ON CONFLICT (table_name) DO UPDATE
                SET failures = f.failures + 1,
                    last_failure_at = excluded.last_failure_at,
                    last_error = excluded.last_error;
        EXCEPTION WHEN OTHERS THEN
            -- Nor may counting it (no table, no privilege): the WARNING above is the record.
            NULL;
        END;
        BEGIN
            -- The bare table name: the bridge reloads all of the table's fields.
            PERFORM pg_catalog.pg_notify({{channel}}, TG_ARGV[0]);
        EXCEPTION WHEN OTHERS THEN
            NULL;
        END;
    END;
    RETURN NULL;
END;
