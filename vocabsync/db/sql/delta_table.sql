        WHEN {{table}} THEN
            cols := {{columns}};
            keys := {{keys}};
            IF TG_LEVEL = 'ROW' THEN
                olds := ARRAY[{{old_texts}}];
                news := ARRAY[{{new_texts}}];
            ELSIF TG_OP = 'INSERT' AND n > 1 THEN
                lists := ARRAY[
{{inserted_values}}];
            ELSIF TG_OP = 'DELETE' AND n > 1 THEN
                lists := ARRAY[
{{deleted_values}}];
            ELSIF TG_OP = 'INSERT' THEN
                SELECT ARRAY[{{row_texts}}] INTO news FROM vocabsync_new AS r;
            ELSIF TG_OP = 'DELETE' THEN
                SELECT ARRAY[{{row_texts}}] INTO news FROM vocabsync_old AS r;
            END IF;
