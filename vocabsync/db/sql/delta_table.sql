        WHEN {{table}} THEN
            cols := {{columns}};
            guc := 'vocabsync.delta_{{index}}_';
            IF TG_LEVEL = 'ROW' THEN
                olds := ARRAY[{{old_texts}}];
                news := ARRAY[{{new_texts}}];
            ELSIF TG_OP = 'INSERT' THEN
                lists := ARRAY[
{{inserted_lists}}];
            ELSIF TG_OP = 'DELETE' THEN
                lists := ARRAY[
{{deleted_lists}}];
            END IF;
