"""The demo end to end, as its users run it: ``python -m mcresolve.demo --quick --json PATH`` in a
subprocess. Its table must say what the article says for every scenario, and nothing it started
may survive it (every child inherits a marker in its environment; /proc is searched for it)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from mcresolve.demo.measure import LOCAL_ONLY, SHOPPERS, SIDECAR, WRITES
from mcresolve.demo.scenarios import battery

MARKER = "MCRESOLVE_DEMO_TEST_MARKER"


def _marked_pids(token: str) -> list[int]:
    needle = f"{MARKER}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _await_no_marked(token: str, within: float = 10.0) -> list[int]:
    deadline = time.monotonic() + within
    while True:
        left = _marked_pids(token)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def _demo(args: list[str], token: str) -> subprocess.Popen[str]:
    env = dict(os.environ, **{MARKER: token, "PYTHONUNBUFFERED": "1"})
    return subprocess.Popen(
        [sys.executable, "-m", "mcresolve.demo", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _kill_marked(token: str) -> None:
    for pid in _marked_pids(token):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _reap(process: subprocess.Popen[str], token: str) -> list[int]:
    """Kill the demo if it still runs, wait (bounded) for everything it started to end, kill what
    did not; returns the PIDs that had survived it."""
    if process.poll() is None:
        process.kill()
        process.wait()
    leftovers = _await_no_marked(token)
    _kill_marked(token)
    return leftovers


@pytest.mark.parametrize("consul_profile", ["1.0.8", "1.21"])
def test_quick_battery_matches_the_article(tmp_path: Path, consul_profile: str) -> None:
    """The whole battery against agents answering like the recorded Consul 1.0.8 and like
    today's 1.21 (modern answer shapes and headers, streaming health reads)."""
    token = uuid.uuid4().hex
    result_path = tmp_path / "demo.json"
    args = ["--quick", "--json", str(result_path), "--consul-profile", consul_profile]
    process = _demo(args, token)
    try:
        output, _ = process.communicate(timeout=400)
    finally:
        leftovers = _reap(process, token)
    print(output)
    assert leftovers == [], f"processes survived the demo: {leftovers}"
    assert process.returncode == 0, output[-4000:]
    document = json.loads(result_path.read_text())
    assert document["ok"] is True
    assert document["setup"]["consul_profile"] == consul_profile
    assert f"agents answer like Consul {consul_profile})" in output
    phases = {(p["scenario"], p["phase"]): p for p in document["phases"]}
    keys = [s.key for s in battery()]
    for key in keys:
        assert (key, "fault") in phases
        if key != "baseline":
            assert (key, "recovery") in phases
            assert phases[(key, "recovery")]["settle_s"] is not None
    for phase in document["phases"]:
        for name in (SHOPPERS, LOCAL_ONLY, SIDECAR, WRITES):
            assert phase["traffic"][name]["served"] + phase["traffic"][name]["failed"] > 0
        assert all(v["ok"] for v in phase["verdicts"]), phase
    # what the article says, read back from the measurements themselves
    dc_loss = phases[("storage-dc", "fault")]["traffic"]
    assert dc_loss[SHOPPERS]["served"] > 0
    assert dc_loss[LOCAL_ONLY]["failed"] > dc_loss[LOCAL_ONLY]["served"]
    assert dc_loss[WRITES]["served"] > 0
    # the plain MinIO client behind mcresolve sidecar keeps serving as stage 3 does
    assert dc_loss[SIDECAR]["served"] > 0
    # what the stage-2 storefront's users see is its error page, not the demo's own time limit
    local_errors = dc_loss[LOCAL_ONLY]["errors"]
    assert local_errors and all("503" in error for error in local_errors), local_errors
    two = phases[("two-nodes", "fault")]["traffic"]
    # (a write already in flight when the quorum answer was switched on may still succeed)
    assert two[WRITES]["failed"] > 0 and two[WRITES]["failed"] >= 9 * two[WRITES]["served"]
    assert two[SHOPPERS]["served"] > 0
    moved = phases[("storefront-dc", "fault")]["traffic"][SHOPPERS]["served_by"]
    assert moved.get("dc2", 0) > 0
    # the table printed is the one the JSON describes
    assert "every scenario behaved as the article says" in output
    assert f"results written to {result_path.resolve()}" in output
    table = output[output.index("scenario ") : output.index("every scenario behaved")]
    assert max(len(line) for line in table.splitlines()) <= 120
    for scenario in battery():
        assert scenario.title in output


def test_interrupt_stops_everything(tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    process = _demo(["--quick", "--no-battery", "--keep-running"], token)
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 120
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C stops everything" in line or time.monotonic() > deadline:
                break
        assert any("storefront dc2 (storefront): http://127.0.0.1:" in x for x in lines), lines
        assert any("demo traffic stopped" in x for x in lines), lines
        assert len(_marked_pids(token)) >= 4  # the demo, weed processes, storefronts
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
        lines.append(rest)
    finally:
        leftovers = _reap(process, token)
    assert leftovers == [], f"processes survived Ctrl-C: {leftovers}"
    assert process.returncode == 130, "".join(lines)[-3000:]
