"""Pure parts of the failover benchmark: summaries, verdicts, Markdown, HAProxy config."""

from __future__ import annotations

from typing import Any

import pytest
from benchmarks.failover.analysis import PeerRun, ScenarioRun, summarize_run
from benchmarks.failover.haproxy import HAProxyServer, HAProxySettings, render_config
from benchmarks.failover.records import (
    NodeVisit,
    Operation,
    PoolChange,
    RequestRecord,
    ScenarioTimes,
)
from benchmarks.failover.report import headline_table, markdown_report, scenario_table
from benchmarks.failover.verdicts import evaluate

TIMES = ScenarioTimes(fault=5.0, heal=10.0, end=12.0)
VICTIM = "127.0.0.1:9001"


def stream(
    failed_between: tuple[float, float] | None = None, latency: float = 0.01
) -> list[RequestRecord]:
    out = []
    for i in range(120):
        at = i * 0.1
        bad = failed_between is not None and failed_between[0] <= at < failed_between[1]
        out.append(
            RequestRecord(
                Operation.READ,
                at,
                at,
                at + (3.0 if bad else latency),
                not bad,
                "deadline" if bad else None,
            )
        )
    return out


def run_of(peers: list[PeerRun], scenario: str = "node-kill", flip: bool = False) -> ScenarioRun:
    return ScenarioRun(scenario, "title", "read", TIMES, 1.0, VICTIM, True, flip, peers)


def test_summary_counts_failures_of_fault_and_after_phases() -> None:
    plain = PeerRun("plain", "d", stream((5.0, 11.0)), [NodeVisit(6.0, VICTIM)])
    plain.consul_counts = {"warm": 1, "fault": 1, "heal": 1, "end": 1}
    query = PeerRun("mcresolve-query", "d", stream(), [NodeVisit(5.01, VICTIM)])
    query.pool_changes = [PoolChange(5.002, "ejected", VICTIM), PoolChange(4.0, "removed", VICTIM)]
    query.consul_counts = {"warm": 2, "fault": 3, "heal": 7, "end": 8}
    summary = summarize_run(run_of([plain, query]))
    p, q = summary["peers"]["plain"], summary["peers"]["mcresolve-query"]
    assert p["failed"] == 60 and p["failed_reads"] == 60
    assert p["steady_s"] is None and p["first_success_s"] == pytest.approx(6.01)
    assert p["victim_after_fault"]["attempts"] == 1
    assert q["failed"] == 0 and q["steady_s"] == 0.0
    assert q["consul_requests"] == {"before": 1, "during": 4, "after": 1}
    assert q["victim_dropped_after_s"] == pytest.approx(0.002)
    assert q["victim_after_fault"]["last_after_s"] == pytest.approx(0.01)


def test_unavailable_peer_is_explained_not_blank() -> None:
    summary = summarize_run(run_of([PeerRun("haproxy", "", unavailable="could not start: x")]))
    table = scenario_table(summary)
    assert "did not take part: could not start: x" in table


def summaries(query_failed: bool, other_failed: bool) -> list[dict[str, Any]]:
    query = PeerRun("mcresolve-query", "d", stream((5.0, 6.0) if query_failed else None))
    plain = PeerRun("plain", "d", stream((5.0, 7.0) if other_failed else None))
    return [summarize_run(run_of([query, plain]))]


def test_verdicts_stage3_zero_failed_and_lead() -> None:
    verdicts = {
        v.target: v for v in evaluate(summaries(False, True), attempt_timeout=1.0, hedge_delay=None)
    }
    assert verdicts["stage 3: zero failed reads"].passed
    assert verdicts["no peer beats stage 3 (failed requests, then failover window)"].passed
    verdicts = {
        v.target: v for v in evaluate(summaries(True, False), attempt_timeout=1.0, hedge_delay=None)
    }
    assert not verdicts["stage 3: zero failed reads"].passed
    lead = verdicts["no peer beats stage 3 (failed requests, then failover window)"]
    assert not lead.passed and "plain" in lead.detail


def test_a_peer_steady_within_one_request_interval_does_not_beat_stage_3() -> None:
    """Steady times are read off requests scheduled 1/rate apart: one interval earlier is the
    same instant; more than one is a lead."""
    lead = "no peer beats stage 3 (failed requests, then failover window)"
    for plain_steady, passed in ((4.95, True), (4.90, False), (5.0, True)):
        runs = summaries(False, False)
        runs[0]["peers"]["mcresolve-query"]["steady_s"] = 5.0
        runs[0]["peers"]["plain"]["steady_s"] = plain_steady
        verdict = {
            v.target: v
            for v in evaluate(runs, attempt_timeout=1.0, hedge_delay=None, request_interval=0.06)
        }[lead]
        assert verdict.passed is passed, (plain_steady, verdict.detail)


def test_flip_verdict_needs_the_pool_to_drop_the_node_quickly() -> None:
    fast = PeerRun(
        "mcresolve-query", "d", stream(), pool_changes=[PoolChange(5.01, "removed", VICTIM)]
    )
    slow = PeerRun(
        "mcresolve-health", "d", stream(), pool_changes=[PoolChange(5.3, "removed", VICTIM)]
    )
    result = evaluate(
        [summarize_run(run_of([fast, slow], "health-flip", flip=True))],
        attempt_timeout=1.0,
        hedge_delay=None,
    )
    by_target = {v.target: v.passed for v in result}
    assert by_target["health flip reflected in < 50 ms (mcresolve-query)"] is True
    assert by_target["health flip reflected in < 50 ms (mcresolve-health)"] is False


def test_blackhole_verdict_compares_max_latency_with_one_attempt_timeout() -> None:
    records = stream()
    records[60] = RequestRecord(Operation.READ, 6.0, 6.0, 7.05, True)
    peer = PeerRun("mcresolve-query", "d", records)
    result = evaluate(
        [summarize_run(run_of([peer], "node-blackhole"))], attempt_timeout=1.0, hedge_delay=None
    )
    assert [v.passed for v in result if "attempt timeout" in v.target] == [True]
    result = evaluate(
        [summarize_run(run_of([peer], "node-blackhole"))], attempt_timeout=0.5, hedge_delay=None
    )
    assert [v.passed for v in result if "attempt timeout" in v.target] == [False]


def test_datacenter_lost_verdicts_judge_first_success_p99_and_the_static_peers() -> None:
    def peer(kind: str, first_after: float, slow: float) -> PeerRun:
        """Fails every request sent in the first ``first_after`` s of the fault; the first
        success after it takes ``slow`` s (the fault's p99 then)."""
        records = stream((TIMES.fault, TIMES.fault + first_after) if first_after else None)
        index = next(i for i, r in enumerate(records) if r.scheduled >= TIMES.fault + first_after)
        at = records[index].scheduled
        records[index] = RequestRecord(Operation.READ, at, at, at + slow, True)
        return PeerRun(kind, "d", records)

    def judged(stage3: PeerRun, multiminio: PeerRun) -> dict[str, bool]:
        run = summarize_run(run_of([stage3, multiminio], "dc-storage-lost"))
        return {
            v.target: v.passed
            for v in evaluate([run], attempt_timeout=1.0, hedge_delay=None)
            if v.target.startswith("datacenter lost")
        }

    fast = judged(peer("mcresolve-query", 0.0, 0.015), peer("multiminio", 0.2, 0.05))
    assert fast == {
        "datacenter lost: first success within 100 ms (stage 3)": True,
        "datacenter lost: p99 <= 2 x (inter-DC RTT + p99 before) (stage 3)": True,
        "datacenter lost: stage 3 better than multiminio on first success and p99": True,
    }
    slow = judged(peer("mcresolve-query", 0.2, 0.5), peer("multiminio", 0.0, 0.015))
    assert not any(slow.values())


def test_markdown_report_has_tables_verdicts_and_micro() -> None:
    summary = summaries(False, True)
    verdicts = evaluate(summary, attempt_timeout=1.0, hedge_delay=None)
    text = markdown_report(
        summary, verdicts, {"command": "python -m benchmarks.failover"}, {"pick() cost": "1 µs"}
    )
    assert "| plain | 20 / 110 |" in text
    assert "`python -m benchmarks.failover`" in text
    assert "| pick() cost | 1 µs |" in text
    assert "| stage 3: zero failed reads | node-kill | read | met |" in text


def test_haproxy_config_lists_local_servers_and_remote_backups() -> None:
    text = render_config(
        [
            HAProxyServer("dc1-0", "127.0.0.1", 9001),
            HAProxyServer("dc2-0", "127.0.0.1", 9002, True),
        ],
        8080,
        HAProxySettings(server_timeout=1.5),
    )
    assert "bind 127.0.0.1:8080" in text
    assert "server dc1-0 127.0.0.1:9001 check\n" in text
    assert "server dc2-0 127.0.0.1:9002 check backup\n" in text
    assert "timeout server 1500ms" in text
    assert "option redispatch" in text and "retries 3" in text
    with pytest.raises(ValueError):
        render_config([], 8080, HAProxySettings())


def test_headline_table_puts_peers_side_by_side() -> None:
    summary = summaries(False, True)
    text = headline_table(summary, "read")
    assert text.splitlines()[0] == "| scenario | mcresolve-query | plain |"
    assert "| node-kill | 0 failed, 0.00 s | 20 failed, 2.00 s |" in text
    assert headline_table(summary, "mixed") == ""
