"""The test-bed pytest plugin is opt-in: a pytest session of a project that installs mcresolve
gets none of its fixtures and imports none of ``mcresolve.testing`` unless the project enables
the plugin; and importing the test beds starts nothing (no exit handler, no thread, no process).

Each check runs a fresh interpreter (a subprocess), because this session has the plugin enabled.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"

FIXTURES = {
    "mcresolve_consul",
    "mcresolve_storage_cluster",
    "mcresolve_storage",
    "mcresolve_topology",
}
OLD_GENERIC_NAMES = {"consul_emulator", "storage_cluster", "storage", "topology"}

# The trivial test file of the foreign project: it records which fixtures its session knows and
# which mcresolve.testing modules are imported, and fails nothing.
PROBE = """
import json, os, sys

NAMES = {names!r}

def test_probe(request):
    manager = request.session._fixturemanager
    names = [name for name in NAMES if manager.getfixturedefs(name, request.node)]
    modules = sorted(m for m in sys.modules if m.startswith("mcresolve.testing"))
    with open(os.environ["PROBE_OUT"], "w") as out:
        json.dump({"fixtures": sorted(names), "modules": modules}, out)
""".replace("{names!r}", repr(sorted(FIXTURES | OLD_GENERIC_NAMES)))


def _declared_pytest11() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project.get("entry-points", {}).get("pytest11", {}))


def _stale_entry_points() -> list[str]:
    """pytest11 names the installed mcresolve metadata still carries but pyproject.toml no longer
    declares: an editable install writes its metadata at install time. Blocking exactly those makes
    the subprocess see what a fresh install of this tree would register."""
    try:
        installed = importlib.metadata.distribution("mcresolve").entry_points
    except importlib.metadata.PackageNotFoundError:
        return []
    names = {ep.name for ep in installed if ep.group == "pytest11"}
    return sorted(names - _declared_pytest11())


def _session(tmp_path: Path, conftest: str | None) -> dict[str, list[str]]:
    (tmp_path / "test_probe.py").write_text(PROBE)
    if conftest is not None:
        (tmp_path / "conftest.py").write_text(conftest)
    out = tmp_path / "probe.json"
    env = {**os.environ, "PYTHONPATH": str(SRC), "PROBE_OUT": str(out)}
    env.pop("PYTEST_ADDOPTS", None)
    blocked = [arg for name in _stale_entry_points() for arg in ("-p", f"no:{name}")]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *blocked, str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,  # a bound on a hung child, not a measurement
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data: dict[str, list[str]] = json.loads(out.read_text())
    return data


def test_the_project_registers_no_pytest11_plugin() -> None:
    assert _declared_pytest11() == set()


def test_a_foreign_session_gets_no_fixture_and_imports_no_test_bed(tmp_path: Path) -> None:
    seen = _session(tmp_path, conftest=None)
    assert set(seen["fixtures"]).isdisjoint(FIXTURES | OLD_GENERIC_NAMES)
    assert seen["modules"] == []


@pytest.mark.parametrize(
    "conftest",
    ['pytest_plugins = ["mcresolve.testing.pytest_plugin"]\n'],
    ids=["pytest_plugins"],
)
def test_enabling_the_plugin_gives_the_prefixed_fixtures_only(
    tmp_path: Path, conftest: str
) -> None:
    seen = _session(tmp_path, conftest=conftest)
    assert set(seen["fixtures"]) >= FIXTURES
    assert set(seen["fixtures"]).isdisjoint(OLD_GENERIC_NAMES)
    assert "mcresolve.testing.pytest_plugin" in seen["modules"]


def test_importing_the_test_beds_starts_nothing() -> None:
    """No exit handler, no thread, no child process at import time: they come with a cluster."""
    script = """
import atexit, json, threading, multiprocessing
registered = []
_register = atexit.register
def spy(func, *args, **kwargs):
    registered.append(getattr(func, "__module__", "?") or "?")
    return _register(func, *args, **kwargs)
atexit.register = spy
before = (threading.active_count(), len(multiprocessing.active_children()))
import mcresolve.testing.pytest_plugin, mcresolve.testing.storage
import mcresolve.testing.storage_fixtures
import mcresolve.testing.topology, mcresolve.testing.faultproxy, mcresolve.testing.consul
from mcresolve.testing.storage import live_weed_pids
after = (threading.active_count(), len(multiprocessing.active_children()))
ours = [m for m in registered if m.startswith("mcresolve")]
print(json.dumps({"before": before, "after": after, "weed": len(live_weed_pids()), "atexit": ours}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=120,  # a bound on a hung child, not a measurement
        check=True,
    )
    seen = json.loads(result.stdout)
    assert seen["atexit"] == []
    assert seen["after"] == seen["before"]
    assert seen["weed"] == 0
