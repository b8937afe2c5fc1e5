"""Demo and test plumbing: private PostgreSQL/Redis servers, child processes, ``vocabsync demo``.

None of this is runtime code. Only ``vocabsync demo`` (lazily), the tests and the benchmarks
import it; the bridge, ``serve`` and the library never do (tests/test_import_graph.py checks).
Machines without PostgreSQL/Redis server binaries get them with ``pip install 'vocabsync[local]'``.
"""
