"""An AI API server embedding vocabsync in-process (an example, laid out as the design's server)."""
