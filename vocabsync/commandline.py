"""What the ``vocabsync`` command and ``python -m vocabsync.services.vocabulary_sync_bridge`` share.

The bridge's options, the logging options, and how a command turns configuration and errors into
an exit status live here, so both entry points behave the same while neither imports the other:
the CLI imports the bridge (lazily, to run it), and the bridge's ``__main__`` imports only this.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from pydantic import ValidationError

from vocabsync.config import Settings, get_settings
from vocabsync.errors import VocabSyncError
from vocabsync.logs import configure_logging

LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]
LOG_FORMATS = ["text", "json"]

BRIDGE_HELP = "run the PostgreSQL -> Redis bridge (until SIGTERM/SIGINT)"
BRIDGE_DESCRIPTION = (
    "LISTEN on the PostgreSQL channel (VOCABSYNC_PG_CHANNEL, default vocabulary_changed); "
    "on each change look up the terms it touched (delta mode's payloads; a bare table name: "
    "read that table's fields whole), append the difference to the vocabulary log in Redis, "
    "PUBLISH the table name on 'vocabulary_updated', and rewrite the key 'vocabulary' at most "
    "every VOCABSYNC_SNAPSHOT_INTERVAL seconds. Reconnects with "
    "backoff and resyncs after every reconnect. Needs a session-level PostgreSQL "
    "connection (on Supabase: the direct connection or the session pooler, port 5432)."
)


class ServeBridge(Protocol):
    """The shape of ``vocabulary_sync_bridge.serve_bridge`` (passed in, never imported here)."""

    def __call__(
        self, settings: Settings | None = None, *, metrics_port: int | None, metrics_host: str
    ) -> Coroutine[Any, Any, None]: ...


def logging_options() -> argparse.ArgumentParser:
    """--log-level/--log-format, also accepted after a long-running command's name."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS)
    options.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=argparse.SUPPRESS,
        help="text (default) or json: one object per line with a stable 'action' event name",
    )
    return options


def add_bridge_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=_env_int("VOCABSYNC_METRICS_PORT"),
        help="serve Prometheus metrics on this port (env VOCABSYNC_METRICS_PORT; off by default)",
    )
    parser.add_argument(
        "--metrics-host", default="0.0.0.0", help="address for the metrics port (default 0.0.0.0)"
    )


def bridge_parser(prog: str) -> argparse.ArgumentParser:
    """A parser for the bridge alone: the options of ``vocabsync bridge``, under another name."""
    parser = argparse.ArgumentParser(
        prog=prog, description=BRIDGE_DESCRIPTION, parents=[logging_options()]
    )
    add_bridge_options(parser)
    return parser


def run_command(command: str, args: argparse.Namespace, action: Callable[[Settings], int]) -> int:
    """Load the settings, configure logging, run ``action``; errors become an exit status.

    2: invalid configuration; 1: a VocabSyncError (its message, secrets redacted); 130: Ctrl-C.
    """
    try:
        settings = get_settings()
    except ValidationError as exc:
        print(f"vocabsync: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    level = getattr(args, "log_level", None) or settings.log_level
    configure_logging(level, getattr(args, "log_format", "text"))
    try:
        return action(settings)
    except VocabSyncError as exc:
        print(f"vocabsync {command}: {settings.redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def run_bridge(serve: ServeBridge, settings: Settings, args: argparse.Namespace) -> int:
    asyncio.run(serve(settings, metrics_port=args.metrics_port, metrics_host=args.metrics_host))
    return 0


def bridge_main(serve: ServeBridge, prog: str, argv: Sequence[str] | None = None) -> int:
    """The bridge as its own program (``python -m vocabsync.services.vocabulary_sync_bridge``)."""
    args = bridge_parser(prog).parse_args(argv)
    return run_command("bridge", args, lambda settings: run_bridge(serve, settings, args))


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None
