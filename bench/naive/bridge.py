"""The design document's bridge, as a baseline: forward each NOTIFY payload to Redis Pub/Sub.

LISTEN on the PostgreSQL channel, PUBLISH every payload unchanged on ``vocabulary_updated``; no
load, no snapshot, no coalescing (the design document's "Redis Listener Bridge Service", in
psycopg 3). Same database, triggers and Redis as vocabsync, so bench/scale.py compares like with
like. Configuration: DATABASE_URL, REDIS_URL, VOCABSYNC_PG_CHANNEL (default vocabulary_changed).
Runs until SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys

import psycopg
import redis
from psycopg import sql

CHANNEL_OUT = "vocabulary_updated"


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    channel = os.environ.get("VOCABSYNC_PG_CHANNEL", "vocabulary_changed")
    client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=10)
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        print(f"naive bridge: LISTEN {channel} -> PUBLISH {CHANNEL_OUT}", flush=True)
        while True:
            for notify in conn.notifies(timeout=5.0):
                client.publish(CHANNEL_OUT, notify.payload)


if __name__ == "__main__":
    sys.exit(main())
