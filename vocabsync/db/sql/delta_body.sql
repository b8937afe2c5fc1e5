DECLARE
    -- Set by the table's branch (TG_ARGV[0] is the table's name in VOCABSYNC_SOURCES):
    cols text[];             -- the table's vocabulary columns, in mapping order
    guc text;                -- prefix of the table's transaction-local settings
    olds text[];             -- row-level UPDATE: the columns' old and new text
    news text[];
    lists text[];            -- INSERT, DELETE: per column, its distinct values as a JSON array
    -- Shared:
    buffer text;
    item text;
    val text;
    sent integer;
    longest integer;
    parts text[] := '{}';    -- '"column":["value",...]', one per listed column
    listed text[] := '{}';   -- the listed columns, in the order of parts
    reload text[] := '{}';   -- columns the bridge must reload in full
    payload text;
BEGIN
    BEGIN
        CASE TG_ARGV[0]  -- the payload's "t"
{{branches}}
        END CASE;

        IF TG_LEVEL = 'ROW' THEN
            -- UPDATE, once per row whose vocabulary text changed (the trigger's WHEN): add the
            -- old and new values of each changed column to that column's buffer, a
            -- transaction-local setting holding ',"v1","v2",' (JSON strings, each once), or '!'
            -- once it holds too much to send, for a reload. The statement trigger sends it.
            FOR i IN 1 .. pg_catalog.array_length(cols, 1) LOOP
                CONTINUE WHEN olds[i] COLLATE "C" IS NOT DISTINCT FROM news[i];
                buffer := pg_catalog.current_setting(guc || i, true);
                CONTINUE WHEN buffer = '!';
                buffer := coalesce(nullif(buffer, ''), ',');
                FOREACH val IN ARRAY ARRAY[olds[i], news[i]] LOOP
                    CONTINUE WHEN val IS NULL OR pg_catalog.btrim(val, E' \t\r\n') = '';
                    item := pg_catalog.to_json(val)::text || ',';
                    IF pg_catalog.strpos(buffer, ',' || item) = 0 THEN
                        buffer := buffer || item;
                    END IF;
                END LOOP;
                IF pg_catalog.octet_length(buffer) > {{max_list_bytes}} THEN
                    buffer := '!';
                END IF;
                IF buffer <> ',' THEN
                    PERFORM pg_catalog.set_config(guc || i, buffer, true);
                END IF;
            END LOOP;
            RETURN NULL;
        END IF;

        IF TG_OP = 'UPDATE' THEN
            -- The end of an UPDATE statement: take what its rows put in the buffers.
            lists := '{}';
            FOR i IN 1 .. pg_catalog.array_length(cols, 1) LOOP
                buffer := pg_catalog.current_setting(guc || i, true);
                IF buffer = '!' THEN
                    reload := reload || cols[i];
                ELSIF pg_catalog.length(buffer) > 1 THEN
                    lists[i] := '[' || pg_catalog.substr(buffer, 2, pg_catalog.length(buffer) - 2) || ']';
                END IF;
                IF buffer <> '' THEN
                    PERFORM pg_catalog.set_config(guc || i, '', true);
                END IF;
            END LOOP;
        ELSIF TG_OP = 'TRUNCATE' THEN
            reload := cols;
        END IF;

        FOR i IN 1 .. pg_catalog.array_length(cols, 1) LOOP
            CONTINUE WHEN lists[i] IS NULL OR lists[i] = '[]' OR cols[i] = ANY (reload);
            parts := parts || (pg_catalog.to_json(cols[i])::text || ':' || lists[i]);
            listed := listed || cols[i];
        END LOOP;
        IF parts <> '{}' THEN
            -- At most {{max_deltas}} notifications listing values per table and transaction;
            -- after that, one reload (identical payloads of a transaction are sent once).
            sent := coalesce(nullif(pg_catalog.current_setting(guc || 'n', true), ''), '0')::integer;
            IF sent >= {{max_deltas}} THEN
                reload := reload || listed;
                parts := '{}';
                listed := '{}';
            END IF;
        END IF;
        LOOP
            payload := '{"t":' || pg_catalog.to_json(TG_ARGV[0])::text
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
        IF parts <> '{}' THEN
            PERFORM pg_catalog.set_config(guc || 'n', (sent + 1)::text, true);
        END IF;
        IF parts <> '{}' OR reload <> '{}' THEN
            PERFORM pg_catalog.pg_notify({{channel}}, payload);
        END IF;
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
            IF TG_LEVEL = 'ROW' THEN
                FOR i IN 1 .. pg_catalog.array_length(cols, 1) LOOP
                    PERFORM pg_catalog.set_config(guc || i, '!', true);
                END LOOP;
            ELSE
                -- The bare table name: the bridge reloads all of the table's fields.
                PERFORM pg_catalog.pg_notify({{channel}}, TG_ARGV[0]);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            NULL;
        END;
    END;
    RETURN NULL;
END;
