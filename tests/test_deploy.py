"""The deployment files under deploy/ are used, not only written.

No Docker engine or systemd runs here, so each file is checked by the real tool that reads it
where that tool runs (``docker-compose config``, ``systemd-analyze verify``/``security``,
supervisor's own config parser), every command line in them is run (``--help``) and parsed by the
installed ``vocabsync``, and the Dockerfile's health check is run against a live API process.
Tools missing on the machine are installed from Debian's packages when we are root (CI is);
a test skips, saying why, only when that is impossible.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.fixtures_app import FAST_ENV
from tests.waiting import wait_until
from vocabsync.cli import build_parser
from vocabsync.local.processes import ManagedProcess, cli_argv, http_json
from vocabsync.local.servers import find_free_port

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
BRIDGE_UNIT = DEPLOY / "systemd" / "vocabsync-bridge.service"
API_UNIT = DEPLOY / "systemd" / "vocabsync-api@.service"
SUPERVISOR_CONF = DEPLOY / "supervisor" / "vocabsync-bridge.conf"
VOCABSYNC = Path(sys.executable).parent / "vocabsync"
"""The installed console script: what /opt/vocabsync/.venv/bin/vocabsync is in the deploy files."""
INSTALLED_PREFIX = "/opt/vocabsync/.venv/bin/"
COMPOSE_SECRETS = {
    "POSTGRES_PASSWORD": "compose-pg-secret",
    "REDIS_PASSWORD": "compose-redis-secret",
    "VOCABSYNC_REFRESH_TOKEN": "compose-refresh-token",
}


# --------------------------------------------------------------------------------------------
# Tools from Debian's packages
# --------------------------------------------------------------------------------------------

APT_OPTIONS = ["-o", "DPkg::Lock::Timeout=300", "-o", "Acquire::Retries=3"]


def _run(
    argv: list[str],
    timeout: float = 600,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd, env=env
    )


def _apt_unavailable() -> str | None:
    """Why apt cannot be used to install a tool here, or None."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return "apt-get/dpkg-deb not found (not a Debian-based machine)"
    return None


def _apt_has_candidate(package: str) -> bool:
    policy = _run(["apt-cache", "policy", package], timeout=60).stdout
    match = re.search(r"Candidate:\s*(\S+)", policy)
    return match is not None and match.group(1) != "(none)"


def _ensure_apt_lists(package: str) -> str | None:
    """Make sure apt knows ``package`` (``apt-get update`` once if needed); why not, or None."""
    if _apt_has_candidate(package):
        return None
    if os.geteuid() != 0:
        return f"apt does not know {package} and only root may run apt-get update"
    update = _run(["apt-get", *APT_OPTIONS, "update"])
    if update.returncode != 0 or not _apt_has_candidate(package):
        return f"apt-get update did not make {package} available: {update.stderr.strip()[-500:]}"
    return None


def tool_cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vocabsync-test-tools"


def debian_binary_extracted(binary: str, package: str) -> Path:
    """``binary`` from PATH, else unpacked from Debian's ``package`` into a cache (no install:
    no maintainer scripts, no service started). Skips the test when neither is possible."""
    found = shutil.which(binary)
    if found:
        return Path(found)
    target = tool_cache() / package
    cached = target / "usr" / "bin" / binary
    if cached.is_file():
        return cached
    reason = _apt_unavailable() or _ensure_apt_lists(package)
    if reason:
        pytest.skip(f"{binary} is not installed and cannot be fetched: {reason}")
    with tempfile.TemporaryDirectory() as download:
        fetched = _run(["apt-get", *APT_OPTIONS, "download", package], cwd=download)
        debs = list(Path(download).glob(f"{package}_*.deb"))
        if fetched.returncode != 0 or not debs:
            pytest.skip(f"apt-get download {package} failed: {fetched.stderr.strip()[-500:]}")
        staging = Path(tempfile.mkdtemp(prefix=f"{package}-", dir=_mkdir(tool_cache())))
        unpacked = _run(["dpkg-deb", "-x", str(debs[0]), str(staging)])
        if unpacked.returncode != 0 or not (staging / "usr" / "bin" / binary).is_file():
            shutil.rmtree(staging, ignore_errors=True)
            pytest.skip(f"dpkg-deb -x of {debs[0].name} gave no {binary}: {unpacked.stderr}")
        with contextlib.suppress(OSError):  # another run won the race: use its copy
            staging.rename(target)
        shutil.rmtree(staging, ignore_errors=True)
    return cached


def debian_binary_installed(binary: str, package: str) -> Path:
    """``binary`` from PATH, else ``apt-get install``ed from Debian (root only), else skip."""
    found = shutil.which(binary)
    if found:
        return Path(found)
    reason = _apt_unavailable()
    if reason is None and os.geteuid() != 0:
        reason = "only root may apt-get install it"
    reason = reason or _ensure_apt_lists(package)
    if reason:
        pytest.skip(f"{binary} is not installed and cannot be installed: {reason}")
    install = _run(
        ["apt-get", *APT_OPTIONS, "install", "-y", "--no-install-recommends", package],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    found = shutil.which(binary)
    if install.returncode != 0 or not found:
        pytest.skip(f"apt-get install {package} failed: {install.stderr.strip()[-500:]}")
    return Path(found)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def docker_compose() -> list[str]:
    """Debian's docker-compose (v1, the one the issue names), or the docker compose v2 plugin."""
    if shutil.which("docker-compose") is None and shutil.which("docker"):
        plugin = _run(["docker", "compose", "version"], timeout=30)
        if plugin.returncode == 0:
            return ["docker", "compose"]
    return [str(debian_binary_installed("docker-compose", "docker-compose"))]


# --------------------------------------------------------------------------------------------
# Command lines
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandLine:
    where: str
    argv: tuple[str, ...]

    @property
    def vocabsync_args(self) -> list[str]:
        """The arguments after the ``vocabsync`` executable."""
        executable, *args = self.argv
        assert Path(executable).name == "vocabsync", (
            f"{self.where}: runs {executable}, not vocabsync"
        )
        return args


def check_command_line(command: CommandLine) -> argparse.Namespace:
    """Run it with --help against the installed package, and parse it with vocabsync's own parser
    (which --help alone would not do: an unknown option after a valid one goes unnoticed)."""
    args = command.vocabsync_args
    result = _run([str(VOCABSYNC), *args, "--help"], timeout=60, env=_clean_env())
    assert result.returncode == 0, f"{command.where}: {result.stderr}"
    parsed = _parse_vocabsync(args, command.where)
    assert f"usage: vocabsync {parsed.command}" in " ".join(result.stdout.split()), result.stdout
    return parsed


def _parse_vocabsync(args: list[str], where: str) -> argparse.Namespace:
    parser = build_parser()
    try:
        return parser.parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"{where}: `vocabsync {shlex.join(args)}` is rejected") from exc


def _clean_env() -> dict[str, str]:
    """No configuration from the developer's environment leaks into a --help run."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
    }


# --------------------------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """The JSON (exec) form's argv; fails on the shell form."""
        value = json.loads(self.arguments)
        assert isinstance(value, list), self
        assert all(isinstance(v, str) for v in value), self
        return value


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions of a Dockerfile: comments dropped, backslash continuations joined."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        if not line.strip():
            continue
        keyword, _, arguments = line.strip().partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def test_dockerfile_is_slim_non_root_and_caches_dependencies_in_their_own_layer() -> None:
    instructions = parse_dockerfile(DOCKERFILE)
    keywords = [i.keyword for i in instructions]

    base = only(instructions, "FROM").arguments
    match = re.fullmatch(r"python:(\d+)\.(\d+)-slim(-\w+)?", base)
    assert match, f"base image {base} is not a slim Python image"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(p) for p in re.findall(r"\d+", requires)[:2])
    assert (int(match.group(1)), int(match.group(2))) >= minimum, (base, requires)

    # Non-root from the first process on: USER after the last RUN, before ENTRYPOINT/CMD.
    user = only(instructions, "USER")
    assert user.arguments.split(":")[0] not in ("root", "0")
    position = instructions.index(user)
    assert position > max(i for i, k in enumerate(keywords) if k == "RUN")
    assert position < keywords.index("ENTRYPOINT")
    assert position < keywords.index("CMD")
    created = [i.arguments for i in instructions if i.keyword == "RUN" and "useradd" in i.arguments]
    assert created, "the user is created"
    assert user.arguments.split(":")[0] in created[0]

    # Dependency layer: only pyproject.toml is copied before the dependencies are installed;
    # the code comes after, so a code change does not re-install the dependencies.
    copies = [(n, i) for n, i in enumerate(instructions) if i.keyword == "COPY"]
    first_copy_index, first_copy = copies[0]
    assert first_copy.arguments.split()[:-1] == ["pyproject.toml"], first_copy
    install = next(
        n
        for n, i in enumerate(instructions)
        if i.keyword == "RUN" and "pip install -r" in i.arguments
    )
    code_copy = next(n for n, i in copies if i.arguments.split()[0] == "vocabsync")
    assert first_copy_index < install < code_copy
    assert all(
        i.keyword != "COPY" or n == first_copy_index for n, i in enumerate(instructions[:install])
    )
    package_install = next(
        n for n, i in enumerate(instructions) if i.keyword == "RUN" and "--no-deps" in i.arguments
    )
    assert package_install > code_copy

    # Everything the image copies exists, and .dockerignore does not exclude it.
    ignored = (REPO / ".dockerignore").read_text().split()
    for _, copy in copies:
        for source in copy.arguments.split()[:-1]:
            assert (REPO / source).exists(), source
            assert source not in ignored, f"{source} is copied but .dockerignore excludes it"
    assert {".git", ".venv", "tests"} <= set(ignored)


def test_dockerfile_dependency_step_installs_exactly_the_package_dependencies(
    tmp_path: Path,
) -> None:
    """Run the layer's requirement extraction as the image build does, and compare it with the
    installed package's own metadata."""
    run = next(
        i.arguments
        for i in parse_dockerfile(DOCKERFILE)
        if i.keyword == "RUN" and "pip install -r" in i.arguments
    )
    extract = run.split("&&")[0].strip()
    command, _, redirect = extract.rpartition(">")
    assert redirect.strip() == "/tmp/requirements.txt", extract
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    argv = shlex.split(command)
    assert argv[0] == "python"
    result = _run([sys.executable, *argv[1:]], cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    requirements = result.stdout.split("\n")
    metadata = importlib.metadata.requires("vocabsync") or []
    expected = [r for r in metadata if "extra ==" not in r]
    assert _requirements(filter(None, requirements)) == _requirements(expected)


def _requirements(lines: Iterable[str]) -> set[tuple[str, frozenset[str], SpecifierSet]]:
    found = set()
    for line in lines:
        requirement = Requirement(line)
        found.add((requirement.name.lower(), frozenset(requirement.extras), requirement.specifier))
    return found


def dockerfile_default_command() -> CommandLine:
    instructions = parse_dockerfile(DOCKERFILE)
    entrypoint = only(instructions, "ENTRYPOINT").exec_form()
    cmd = only(instructions, "CMD").exec_form()
    return CommandLine("Dockerfile ENTRYPOINT + CMD", (*entrypoint, *cmd))


def test_dockerfile_healthcheck_tells_a_live_api_from_a_dead_one(tmp_path: Path) -> None:
    healthcheck = only(parse_dockerfile(DOCKERFILE), "HEALTHCHECK").arguments
    options, _, command = healthcheck.partition("CMD ")
    assert {"--interval", "--timeout", "--retries"} <= {
        option.split("=")[0] for option in options.split()
    }
    argv = json.loads(command)
    assert argv[0] == "python"
    assert "curl" not in command  # slim images have no curl
    default = _parse_vocabsync(dockerfile_default_command().vocabsync_args, "Dockerfile")
    assert default.command == "serve"
    assert f"127.0.0.1:{default.port}/health" in command

    # The same check against a real API process (the port mapped to a free one): healthy while
    # it runs, even with PostgreSQL and Redis unreachable (liveness, not readiness), then not.
    port = find_free_port()
    probe = [sys.executable, *argv[1:-1], argv[-1].replace(f":{default.port}/", f":{port}/")]
    env = {
        **_clean_env(),
        "DATABASE_URL": "postgresql://app@127.0.0.1:1/app",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "VOCABSYNC_NETWORK_TIMEOUT": "1",
    }
    api = ManagedProcess(
        "api", cli_argv("serve", "--host", "127.0.0.1", "--port", str(port)), env, tmp_path
    ).start()
    try:

        def answering() -> bool:
            api.check_alive()
            return _answers(f"http://127.0.0.1:{port}/health")

        wait_until(answering, timeout=30, message="API process answering")
        healthy = _run(probe, timeout=30)
        assert healthy.returncode == 0, healthy.stderr
    finally:
        api.terminate()
    assert _run(probe, timeout=30).returncode != 0


def _answers(url: str) -> bool:
    try:
        return http_json(url, timeout=1)[0] == 200
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# docker-compose.yml
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_config(docker_compose: list[str]) -> dict[str, Any]:
    """The compose file as docker-compose itself resolves it (anchors, merges, variables)."""
    result = _run(
        [*docker_compose, "-f", str(COMPOSE), "config"],
        env={**_clean_env(), **COMPOSE_SECRETS},
        timeout=120,
    )
    assert result.returncode == 0, f"docker-compose rejects {COMPOSE}:\n{result.stderr}"
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict)
    return config


def vocabsync_services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = config["services"]
    assert isinstance(services, dict)
    return {name: s for name, s in services.items() if s.get("image", "").startswith("vocabsync")}


def test_compose_file_is_accepted_and_describes_a_failover_deployment(
    compose_config: dict[str, Any],
) -> None:
    services = compose_config["services"]
    assert isinstance(services, dict)
    ours = vocabsync_services(compose_config)
    commands = {
        name: _parse_vocabsync([str(a) for a in s["command"]], name).command
        for name, s in ours.items()
    }
    assert sorted(commands.values()) == ["bridge", "bridge", "migrate", "serve", "serve"], commands
    assert {"postgres", "redis"} <= set(services)

    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"], f"{name} has a healthcheck"
    for name, service in ours.items():
        build = service["build"]
        assert Path(build["context"], build["dockerfile"]).resolve() == DOCKERFILE
        depends = service["depends_on"]
        if commands[name] == "migrate":
            assert depends["postgres"]["condition"] == "service_healthy"
            assert service["restart"] == "no"
            # "disable: true" (v1 renders it as test: [NONE]): the image's check is for the API.
            assert service["healthcheck"] in ({"disable": True}, {"test": ["NONE"]})
            continue
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert service["restart"] in ("always", "unless-stopped")
        env = service["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://")
        assert env["REDIS_URL"].startswith("redis://")
        if commands[name] == "bridge":
            # Its health check probes the metrics port it was told to open.
            port = _parse_vocabsync([str(a) for a in service["command"]], name).metrics_port
            assert f"127.0.0.1:{port}/metrics" in " ".join(service["healthcheck"]["test"])
        else:
            assert "healthcheck" not in service or not service["healthcheck"].get("disable")
            assert env["VOCABSYNC_INSTANCE_NAME"] == name
    published = sorted(
        str(p["published"]) if isinstance(p, dict) else str(p).split(":")[0]
        for name, s in ours.items()
        if commands[name] == "serve"
        for p in s["ports"]
    )
    assert len(set(published)) == 2, "each API instance on its own host port"


def test_compose_file_refuses_to_run_without_its_secrets(docker_compose: list[str]) -> None:
    for missing in COMPOSE_SECRETS:
        env = {**_clean_env(), **{k: v for k, v in COMPOSE_SECRETS.items() if k != missing}}
        result = _run([*docker_compose, "-f", str(COMPOSE), "config"], env=env, timeout=120)
        assert result.returncode != 0, f"config accepted without {missing}"
        assert missing in result.stderr


def test_prometheus_scrape_config_names_the_compose_services(
    compose_config: dict[str, Any],
) -> None:
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    ours = vocabsync_services(compose_config)
    targets = {
        job["job_name"]: sorted(t for c in job["static_configs"] for t in c["targets"])
        for job in scrape["scrape_configs"]
    }
    expected: dict[str, list[str]] = {"vocabsync-bridge": [], "vocabsync-api": []}
    for name, service in ours.items():
        parsed = _parse_vocabsync([str(a) for a in service["command"]], name)
        if parsed.command == "bridge":
            expected["vocabsync-bridge"].append(f"{name}:{parsed.metrics_port}")
        elif parsed.command == "serve":
            expected["vocabsync-api"].append(f"{name}:{parsed.port}")
    assert targets == {job: sorted(t) for job, t in expected.items()}


# --------------------------------------------------------------------------------------------
# systemd
# --------------------------------------------------------------------------------------------


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> every value (systemd allows a key several times)."""
    values: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        values.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return values


def installed_for_test(unit: Path, directory: Path, instance: str = "8001") -> Path:
    """The unit as installed here: the same file, with /opt/vocabsync/.venv/bin/ pointing at this
    checkout's installed package (systemd-analyze verify checks that ExecStart exists)."""
    name = unit.name.replace("@.", f"@{instance}.")
    text = unit.read_text().replace(INSTALLED_PREFIX, f"{VOCABSYNC.parent}/")
    target = directory / name
    target.write_text(text)
    return target


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed (package systemd)")
    return found


def test_systemd_units_restart_always_and_are_hardened() -> None:
    for unit in (BRIDGE_UNIT, API_UNIT):
        settings = unit_settings(unit)
        service = {k.removeprefix("Service."): v[-1] for k, v in settings.items()}
        assert service["Restart"] == "always", unit.name
        assert float(service["RestartSec"]) > 0
        assert service["User"] not in ("root", "0")
        assert service["NoNewPrivileges"] == "yes"
        assert service["ProtectSystem"] == "strict"
        assert service["PrivateTmp"] == "yes"
        assert service["ProtectHome"] == "yes"
        assert service["EnvironmentFile"].startswith("/etc/vocabsync/")
        assert settings["Install.WantedBy"] == ["multi-user.target"]
        assert "network-online.target" in settings["Unit.After"][0]


@pytest.mark.parametrize("unit", [BRIDGE_UNIT, API_UNIT], ids=lambda p: p.name)
def test_systemd_analyze_verify_accepts_the_units(unit: Path, tmp_path: Path) -> None:
    analyze = systemd_analyze()
    # Can verify run at all in this container? Try a known-good unit first.
    probe = tmp_path / "probe" / "probe.service"
    probe.parent.mkdir()
    probe.write_text("[Service]\nExecStart=/bin/true\n")
    sanity = _run([analyze, "verify", str(probe)], timeout=60)
    if sanity.returncode != 0 or sanity.stderr.strip():
        pytest.skip(f"systemd-analyze verify cannot run here: {sanity.stderr.strip()[:500]}")

    installed = installed_for_test(unit, tmp_path)
    result = _run([analyze, "verify", str(installed)], timeout=60)
    # Warnings (unknown keys, bad values) go to stderr with exit status 0: none allowed.
    assert result.returncode == 0, result.stderr
    assert not result.stderr.strip(), result.stderr
    # The exposure score of the hardening options: "OK" (<= 2.0 on systemd's 0-10 scale).
    security = _run(
        [analyze, "security", "--offline=yes", "--threshold=20", str(installed)], timeout=60
    )
    assert security.returncode == 0, security.stdout[-1500:] + security.stderr
    assert re.search(r"Overall exposure level for .*: [0-1]\.\d OK", security.stdout)


def systemd_commands() -> list[CommandLine]:
    commands = []
    for unit in (BRIDGE_UNIT, API_UNIT):
        (exec_start,) = unit_settings(unit)["Service.ExecStart"]
        line = exec_start.replace("%i", "8001").replace("%H", "host")
        assert "%" not in line, f"unhandled specifier in {line}"
        commands.append(CommandLine(f"{unit.name} ExecStart", tuple(shlex.split(line))))
    return commands


# --------------------------------------------------------------------------------------------
# supervisor
# --------------------------------------------------------------------------------------------


def supervisor_program(tmp_path: Path) -> Any:
    """The program section as supervisord loads it, through supervisor's own parser.

    The file is used as shipped, except the two things that only exist on a production host:
    the user ``vocabsync`` (supervisor checks it exists) and /opt/vocabsync.
    """
    from supervisor.options import ServerOptions

    text = SUPERVISOR_CONF.read_text()
    assert "\nuser=vocabsync\n" in text
    text = text.replace("\nuser=vocabsync\n", f"\nuser={getpass.getuser()}\n")
    text = text.replace(INSTALLED_PREFIX, f"{VOCABSYNC.parent}/")
    text = text.replace("directory=/opt/vocabsync", f"directory={tmp_path}")
    program = tmp_path / "vocabsync-bridge.conf"
    program.write_text(text)
    main = tmp_path / "supervisord.conf"
    main.write_text(
        f"[supervisord]\nlogfile={tmp_path}/supervisord.log\n[include]\nfiles = {program}\n"
    )
    options = ServerOptions()
    options.realize(args=["-c", str(main)])
    (group,) = options.process_group_configs
    (process,) = group.process_configs
    return process


def test_supervisor_loads_the_design_documents_bridge_program(tmp_path: Path) -> None:
    from supervisor.datatypes import RestartUnconditionally

    process = supervisor_program(tmp_path)
    assert process.name == "vocabulary_bridge"  # the design document's program name
    assert process.autostart is True
    assert process.autorestart is RestartUnconditionally
    assert process.stopsignal == 15  # SIGTERM: the bridge closes its connections and exits
    assert process.killasgroup
    assert process.stopasgroup
    assert process.stderr_logfile == "/var/log/vocabulary_bridge.err.log"
    assert process.stdout_logfile == "/var/log/vocabulary_bridge.out.log"
    assert process.directory == str(tmp_path)
    assert shlex.split(process.command)[0] == str(VOCABSYNC)


def supervisor_command() -> CommandLine:
    text = SUPERVISOR_CONF.read_text()
    (line,) = [line for line in text.splitlines() if line.startswith("command=")]
    return CommandLine("supervisor command", tuple(shlex.split(line.removeprefix("command="))))


# --------------------------------------------------------------------------------------------
# Every command line in every deployment file
# --------------------------------------------------------------------------------------------


def static_commands() -> Iterator[CommandLine]:
    yield dockerfile_default_command()
    yield from systemd_commands()
    yield supervisor_command()


@pytest.mark.parametrize("command", list(static_commands()), ids=lambda c: c.where)
def test_deploy_command_is_a_real_vocabsync_command_line(command: CommandLine) -> None:
    parsed = check_command_line(command)
    assert parsed.command in ("serve", "bridge", "migrate")
    if parsed.command == "bridge":
        assert parsed.metrics_port == 9100  # what prometheus.yml scrapes
    if parsed.command == "serve":
        assert parsed.host == "0.0.0.0"


def test_every_compose_command_is_a_real_vocabsync_command_line(
    compose_config: dict[str, Any],
) -> None:
    entrypoint = only(parse_dockerfile(DOCKERFILE), "ENTRYPOINT").exec_form()
    services = vocabsync_services(compose_config)
    assert services
    for name, service in services.items():
        argv = service.get("entrypoint") or entrypoint
        command = CommandLine(f"compose service {name}", (*argv, *map(str, service["command"])))
        check_command_line(command)


# --------------------------------------------------------------------------------------------
# supervisor for real: supervisord runs the program and restarts a bridge killed with SIGKILL
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_supervisord_runs_the_bridge_program_and_restarts_it_after_kill_9(
    tmp_path: Path, db_url: str, redis_url: str
) -> None:
    """The shipped program section under a real supervisord: the bridge reads its settings from
    the .env file in its directory, becomes active, and comes back after ``kill -9``."""
    port = find_free_port()
    text = SUPERVISOR_CONF.read_text()
    text = text.replace("\nuser=vocabsync\n", f"\nuser={getpass.getuser()}\n")
    text = text.replace(INSTALLED_PREFIX, f"{VOCABSYNC.parent}/")
    text = text.replace("directory=/opt/vocabsync", f"directory={tmp_path}")
    text = text.replace("--metrics-port 9100", f"--metrics-port {port}")
    text = text.replace("/var/log/", f"{tmp_path}/")
    (tmp_path / "vocabsync-bridge.conf").write_text(text)
    (tmp_path / ".env").write_text(
        f"DATABASE_URL={db_url}\nREDIS_URL={redis_url}\n"
        + "".join(f"{name}={value}\n" for name, value in FAST_ENV.items())
    )
    socket = tmp_path / "supervisor.sock"
    config = tmp_path / "supervisord.conf"
    config.write_text(
        f"[unix_http_server]\nfile={socket}\n"
        f"[supervisord]\nnodaemon=true\nlogfile={tmp_path}/supervisord.log\n"
        f"pidfile={tmp_path}/supervisord.pid\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        f"[supervisorctl]\nserverurl=unix://{socket}\n"
        f"[include]\nfiles = {tmp_path}/vocabsync-bridge.conf\n"
    )
    bin_dir = Path(sys.executable).parent
    supervisord = ManagedProcess(
        "supervisord", [str(bin_dir / "supervisord"), "-c", str(config)], _clean_env(), tmp_path
    ).start()
    metrics_url = f"http://127.0.0.1:{port}/metrics"

    def bridge_pid() -> int | None:
        result = _run(
            [str(bin_dir / "supervisorctl"), "-c", str(config), "pid", "vocabulary_bridge"],
            timeout=30,
        )
        pid = result.stdout.strip()
        return int(pid) if pid.isdigit() and pid != "0" else None

    def active() -> bool:
        supervisord.check_alive()
        try:
            with urllib.request.urlopen(metrics_url, timeout=2) as response:
                return "vocabsync_bridge_active 1.0" in response.read().decode()
        except OSError:
            return False

    try:
        wait_until(active, timeout=30, message="the bridge under supervisord is active")
        first = wait_until(bridge_pid, message="supervisorctl knows the bridge")
        os.kill(first, signal.SIGKILL)
        second = wait_until(
            lambda: (pid := bridge_pid()) not in (None, first) and pid,
            timeout=30,
            message="supervisord restarted the bridge",
        )
        wait_until(active, timeout=30, message="the restarted bridge is active again")
        assert second != first
        stopped = _run(
            [str(bin_dir / "supervisorctl"), "-c", str(config), "stop", "vocabulary_bridge"],
            timeout=60,
        )
        assert "stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    finally:
        supervisord.terminate()
    log = (tmp_path / "vocabulary_bridge.out.log").read_text() + (
        tmp_path / "vocabulary_bridge.err.log"
    ).read_text()
    assert "bridge_listening" in log or "listening" in log
    assert "bridge stopped" in log  # SIGTERM: a clean stop
