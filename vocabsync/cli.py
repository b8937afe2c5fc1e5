"""The ``vocabsync`` command: migrate, bridge, serve, demo.

Every option also reads its environment variable (see the README's configuration table), so the
same command line works in systemd units, Docker and a shell.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from vocabsync.commandline import (
    BRIDGE_DESCRIPTION,
    BRIDGE_HELP,
    LOG_FORMATS,
    LOG_LEVELS,
    add_bridge_options,
    logging_options,
    run_bridge,
    run_command,
)
from vocabsync.config import Settings

DESCRIPTION = """\
Keep the AI server's vocabulary in sync with PostgreSQL in real time:
triggers -> NOTIFY -> bridge -> Redis -> every API instance.
Configuration comes from the environment and .env (see README: Configuration).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vocabsync",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="log level (env VOCABSYNC_LOG_LEVEL, default INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text for people, json (one object per line, with an 'action' field) for log tools",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    migrate = commands.add_parser(
        "migrate",
        help="apply pending migrations and (re)install the change triggers",
        description=(
            "Apply the SQL migrations shipped in the package that are not yet recorded, in order, "
            "then verify the trigger function and each vocabulary table's triggers, re-installing "
            "them if one is missing (dropped by hand, table recreated), altered, covers other "
            "columns than VOCABSYNC_SOURCES, or belongs to another trigger mode. In delta mode "
            "(the default) it then builds any missing lookup index, one per vocabulary column, "
            "with CREATE INDEX CONCURRENTLY. Safe to run at every deploy."
        ),
    )
    migrate.add_argument(
        "--check",
        action="store_true",
        help="only verify that the function and all triggers of the mode (and, in delta mode, "
        "the lookup indexes) are installed, and say which mode is; exit 1 naming what is "
        "missing or wrong",
    )
    migrate.add_argument(
        "--mode",
        choices=["precise", "statement", "delta"],
        help="trigger mode (env VOCABSYNC_TRIGGER_MODE, default delta). delta: a write that "
        "can change the vocabulary notifies with the values it touched, and the bridge looks "
        "up just those (an index per vocabulary column, which migrate builds). precise: the "
        "same writes notify with the table's name and the bridge reads its fields whole; for "
        "small vocabularies, or to spare INSERTs delta's trigger CPU and the indexes. "
        "statement (the design document's): every statement notifies; for tables whose "
        "vocabulary columns are rewritten in bulk routinely",
    )

    bridge = commands.add_parser(
        "bridge", parents=[logging_options()], help=BRIDGE_HELP, description=BRIDGE_DESCRIPTION
    )
    add_bridge_options(bridge)

    rollback = commands.add_parser(
        "rollback",
        help="switch real-time sync off (drop triggers; instances read PostgreSQL) or back on",
        description=(
            "The design document's rollback plan: drop the triggers and the function, tell "
            "bridges to stop publishing and API instances to serve reads from PostgreSQL "
            "(within one health-check interval). Writes are never affected. --reenable "
            "reinstalls the triggers and returns everything to real-time sync."
        ),
    )
    rollback.add_argument(
        "--reenable", action="store_true", help="reinstall the triggers and resume real-time sync"
    )

    status = commands.add_parser(
        "status",
        help="report the health of the whole deployment; exit 0 only when all is well",
        description=(
            "Check that PostgreSQL is reachable and the triggers are installed, which bridge is "
            "active (from its heartbeat in Redis), that the snapshot in Redis equals what the "
            "database holds now, and which version each API instance serves. Exit status 0 "
            "only when every check passes."
        ),
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")

    serve = commands.add_parser(
        "serve",
        parents=[logging_options()],
        help="run an API instance with uvicorn",
        description="Run the FastAPI app (vocabsync.main:app) with uvicorn.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")

    demo = commands.add_parser(
        "demo",
        parents=[logging_options()],
        help="run the whole pipeline locally and watch a change reach two instances",
        description=(
            "Without DATABASE_URL/REDIS_URL: start private PostgreSQL and Redis servers in a "
            "temporary directory, migrate, seed a realistic vocabulary (1,000 projects, 500 "
            "categories, 200 files), run a bridge and two API instances, make a few changes "
            "and print how long each took to reach both instances."
        ),
    )
    demo.add_argument("--once", action="store_true", help="run the scripted changes, then exit")
    demo.add_argument(
        "--base-port", type=int, default=None, help="first port for the two API instances"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.command, args, lambda settings: _dispatch(args, settings))


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "migrate":
        from vocabsync.db.migrate import check, migrate

        if args.mode is not None:
            settings = settings.model_copy(update={"trigger_mode": args.mode})
        if args.check:
            result = asyncio.run(check(settings))
            installed = result.installed_mode or "neither mode completely"
            if result.ok:
                print(f"ok: trigger function and all {result.mode}-mode triggers are installed")
                return 0
            print(f"installed: {installed}; configured: {result.mode}", file=sys.stderr)
            print("missing or wrong:", file=sys.stderr)
            for problem in result.problems:
                print(f"  - {problem}", file=sys.stderr)
            print("run `vocabsync migrate` to install them", file=sys.stderr)
            return 1
        report = asyncio.run(migrate(settings))
        for name in report.applied:
            print(f"applied {name}")
        if report.repaired:
            print("re-installed the triggers (missing, altered, or of another mode)")
        for name in report.indexes_built:
            print(f"built index {name}")
        print(
            f"ok: {len(report.applied)} applied, {len(report.already_applied)} already applied; "
            f"{report.check.mode}-mode triggers installed"
        )
        return 0
    if args.command == "bridge":
        from vocabsync.services.vocabulary_sync_bridge import serve_bridge

        return run_bridge(serve_bridge, settings, args)
    if args.command == "rollback":
        from vocabsync.rollback import reenable, rollback

        if args.reenable:
            asyncio.run(reenable(settings))
            print("real-time sync re-enabled: triggers installed, bridges resync, instances follow")
        else:
            asyncio.run(rollback(settings))
            print(
                "real-time sync disabled: triggers dropped; bridges stop publishing and instances "
                "serve from PostgreSQL. Undo with `vocabsync rollback --reenable`."
            )
        return 0
    if args.command == "status":
        from vocabsync.status import collect_status

        status = asyncio.run(collect_status(settings))
        print(status.to_json() if args.json else status.to_table())
        return 0 if status.ok else 1
    if args.command == "serve":
        import signal

        import uvicorn

        # uvicorn re-raises SIGTERM after its graceful shutdown; with the default handler the
        # process would then die "killed by SIGTERM", which supervisors record as a failure.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        uvicorn.run(
            "vocabsync.main:app",
            host=args.host,
            port=args.port,
            log_config=None,
            timeout_graceful_shutdown=5,
        )
        return 0
    if args.command == "demo":
        # Demo plumbing (local servers, child processes) is not runtime code: imported only here.
        from vocabsync.local.demo import run_demo

        return run_demo(settings, once=args.once, base_port=args.base_port)
    raise AssertionError(args.command)  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
