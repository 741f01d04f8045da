"""Decoding a health answer against the previous one (:class:`EntryMemo`) gives exactly what
decoding it from scratch gives, whatever changed, however the answer is laid out, and whatever
garbage it holds; and it decodes only what changed, keeping the objects of what did not."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.consul.blocking import BlockingPolicy
from mcresolve.consul.errors import ConsulAnswerError
from mcresolve.consul.models import (
    EntryMemo,
    HealthAnswer,
    decode_entries,
    parse_entries,
    split_entries,
)
from mcresolve.consul.transport import decode_json
from mcresolve.consul.watch import HealthServiceSpec, WatchPolicy, WatchRegistry
from mcresolve.testing.consul import ConsulEmulator

WATCH = WatchPolicy(blocking=BlockingPolicy(wait=2.0, min_interval=0.02))

#: Values that look like the joins the answer is cut at, inside strings and nested values.
TRICKY = ['},{"Node":{', '}, {"Node": {', '\n    },\n    {\n        "Node": {', "}]", "\\", '"']
TEXT = st.one_of(st.text(max_size=6), st.sampled_from(TRICKY))
ADDRESS = st.sampled_from(["10.0.0.1", "10.0.0.2", "::1", "", "a b", "h.example", "999.1.1.1"])
PORT = st.sampled_from([0, 1, 80, 9000, 9001, 65535, 70000])
STATUS = st.sampled_from(["passing", "warning", "critical", "maintenance", "odd"])


def strict(body: bytes) -> Any:
    return decode_json(body, "http://127.0.0.1:8500", "GET", "/v1/health/service/web")


@st.composite
def an_entry(draw: st.DrawFn) -> dict[str, Any]:
    node = draw(st.sampled_from(["n1", "n2", "n3"]))
    checks = [
        {
            "Node": node,
            "CheckID": draw(st.sampled_from(["serfHealth", "svc", "maint"])),
            "Name": draw(TEXT),
            "Status": draw(STATUS),
            "Output": draw(TEXT),
            "ServiceID": draw(TEXT),
            "ServiceName": "web",
            "CreateIndex": 5,
            "ModifyIndex": draw(st.integers(5, 9)),
        }
        for _ in range(draw(st.integers(0, 3)))
    ]
    entry: dict[str, Any] = {
        "Node": {
            "ID": "",
            "Node": node,
            "Address": draw(ADDRESS),
            "Datacenter": draw(st.sampled_from(["", "dc1", "dc2"])),
            "TaggedAddresses": draw(st.none() | st.just({"lan": "10.0.0.1", "wan": "10.9.0.1"})),
            "Meta": draw(st.none() | st.dictionaries(TEXT, TEXT, max_size=2)),
            "CreateIndex": 5,
            "ModifyIndex": draw(st.integers(5, 9)),
        },
        "Service": {
            "ID": draw(st.sampled_from(["web-1", "web-2", "web-3"])),
            "Service": "web",
            "Tags": draw(st.none() | st.lists(TEXT, max_size=3)),
            "Address": draw(ADDRESS),
            "Meta": draw(st.none() | st.dictionaries(TEXT, TEXT, max_size=2)),
            "Port": draw(PORT),
            "TaggedAddresses": draw(
                st.none() | st.just({"wan_ipv4": {"Address": "10.8.0.1", "Port": 9100}})
            ),
            "CreateIndex": 5,
            "ModifyIndex": draw(st.integers(5, 9)),
        },
        "Checks": checks,
    }
    if draw(st.booleans()):  # something nested that holds a join: the cut falls inside
        entry["Definition"] = {"x": [{"A": 1}, {"Node": {"B": draw(TEXT)}}]}
    return entry


PATHS = [
    ("Node", "Address"),
    ("Node", "Datacenter"),
    ("Node", "Meta"),
    ("Node", "ModifyIndex"),
    ("Service", "ID"),
    ("Service", "Port"),
    ("Service", "Address"),
    ("Service", "Tags"),
    ("Service", "Meta"),
    ("Service", "TaggedAddresses"),
]


@st.composite
def a_step(draw: st.DrawFn, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The next answer: any field of any entry may change (with or without its ModifyIndex),
    entries come, go, repeat and move."""
    result = copy.deepcopy(entries)
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["field", "check", "add", "remove", "repeat", "reorder"]))
        if kind == "add" or not result:
            result.insert(draw(st.integers(0, len(result))), draw(an_entry()))
        elif kind == "remove":
            result.pop(draw(st.integers(0, len(result) - 1)))
        elif kind == "repeat":
            result.append(copy.deepcopy(draw(st.sampled_from(result))))
        elif kind == "reorder":
            result = draw(st.permutations(result))
        elif kind == "field":
            target = draw(st.sampled_from(result))
            part, name = draw(st.sampled_from(PATHS))
            replacement = draw(an_entry())[part][name]
            target[part][name] = replacement
        else:
            target = draw(st.sampled_from(result))
            if target["Checks"]:
                check = draw(st.sampled_from(target["Checks"]))
                check[draw(st.sampled_from(["Status", "Output", "Name"]))] = draw(STATUS | TEXT)
    return result


LAYOUTS = {
    "consul": {"separators": (",", ":")},
    "pretty": {"indent": 4},
    "python": {},
    "other": {"indent": 2},
}


def encode(entries: list[dict[str, Any]], layout: str) -> bytes:
    return json.dumps(entries, **LAYOUTS[layout]).encode()


def from_scratch(body: bytes, **options: Any) -> HealthAnswer:
    return HealthAnswer.decode(parse_entries(strict(body)), "dc9", **options)


def incrementally(body: bytes, memo: EntryMemo, **options: Any) -> HealthAnswer:
    entries = decode_entries(body, strict, "GET /v1/health/service/web", memo)
    return HealthAnswer.decode(entries, "dc9", memo=memo, **options)


def same(a: HealthAnswer, b: HealthAnswer) -> None:
    assert a == b
    # Endpoint equality leaves nothing out that a pool sees, but be explicit.
    assert [e.to_json() for e in a.endpoints] == [e.to_json() for e in b.endpoints]
    assert [e.key for e in a.endpoints] == [e.key for e in b.endpoints]
    assert a.rejected == b.rejected


OPTIONS = st.fixed_dictionaries(
    {
        "default_port": st.none() | st.just(7000),
        "address": st.sampled_from(["lan", "wan", "auto"]),
        "local_datacenter": st.none() | st.sampled_from(["dc1", "dc2"]),
    }
)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), layout=st.sampled_from(sorted(LAYOUTS)))
def test_incremental_decoding_equals_decoding_from_scratch(
    data: st.DataObject, layout: str
) -> None:
    memo = EntryMemo()
    answer = data.draw(st.lists(an_entry(), max_size=5))
    for _ in range(data.draw(st.integers(1, 6))):
        options = data.draw(OPTIONS)  # (a spec's are fixed, but the agent's datacenter...)
        body = encode(answer, data.draw(st.sampled_from([layout, layout, "consul", "pretty"])))
        same(incrementally(body, memo, **options), from_scratch(body, **options))
        answer = data.draw(a_step(answer))


@settings(max_examples=300, deadline=None)
@given(
    entries=st.lists(an_entry(), min_size=1, max_size=4),
    layout=st.sampled_from(sorted(LAYOUTS)),
    cut=st.integers(0, 10**6),
    junk=st.binary(max_size=6),
)
def test_a_damaged_answer_fails_or_decodes_exactly_as_from_scratch(
    entries: list[dict[str, Any]], layout: str, cut: int, junk: bytes
) -> None:
    memo = EntryMemo()
    good = encode(entries, layout)
    incrementally(good, memo)  # the memo knows every piece of the undamaged answer
    position = cut % (len(good) + 1)
    damaged = good[:position] + junk + good[position + len(junk) // 2 :]
    try:
        expected = from_scratch(damaged)
    except Exception as exc:  # the answer is refused either way, as the same kind of error
        with pytest.raises(type(exc)):
            incrementally(damaged, memo)
        return
    same(incrementally(damaged, memo), expected)


def _service(count: int) -> list[dict[str, Any]]:
    return [
        {
            "Node": {
                "Node": f"n{i}",
                "Address": f"10.0.{i // 250}.{i % 250 + 1}",
                "ModifyIndex": 5,
            },
            "Service": {"ID": f"web-{i}", "Service": "web", "Port": 9000, "ModifyIndex": 5},
            "Checks": [{"CheckID": "maint", "Status": "passing", "ModifyIndex": 5}],
        }
        for i in range(count)
    ]


class CountingDecoder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, body: bytes) -> Any:
        self.calls += 1
        return strict(body)


@pytest.mark.parametrize("layout", ["consul", "pretty", "python"])
def test_one_changed_instance_is_the_only_one_decoded_and_the_others_keep_their_objects(
    layout: str,
) -> None:
    memo = EntryMemo()
    entries = _service(50)
    first = incrementally(encode(entries, layout), memo)
    entries[20]["Checks"][0]["Output"] = "changed"  # ModifyIndex untouched: seen all the same
    del entries[30]
    decoder = CountingDecoder()
    second = HealthAnswer.decode(
        decode_entries(encode(entries, layout), decoder, "answer", memo), "dc9", memo=memo
    )
    assert decoder.calls == 1  # the changed entry alone
    assert second.entries[20].checks[0].output == "changed"
    assert second.entries[20] is not first.entries[20]
    kept = [i for i in range(50) if i not in (20, 30)]
    for old, new in zip(kept, [i for i in range(49) if i != 20], strict=True):
        assert second.entries[new] is first.entries[old]
        assert second.endpoints[new] is first.endpoints[old]
    assert second == from_scratch(encode(entries, layout))


def test_a_cut_inside_an_entry_falls_back_to_decoding_the_whole_answer() -> None:
    entries = _service(3)
    entries[1]["Service"]["Meta"] = {"note": "x"}
    entries[1]["Definition"] = [{"A": 1}, {"Node": {"B": 2}}]  # holds the compact join
    body = encode(entries, "consul")
    pieces = split_entries(body)
    assert pieces is not None and len(pieces[0]) == 4  # cut where no entry ends
    decoder = CountingDecoder()
    memo = EntryMemo()
    decoded = decode_entries(body, decoder, "answer", memo)
    assert decoded == parse_entries(strict(body))
    assert len(memo) == 0  # nothing learnt from a wrong cut


def test_answers_that_are_not_cut_are_decoded_whole() -> None:
    assert split_entries(b"[]") is None
    assert split_entries(b'[ {"Node": {}}]') is None
    memo = EntryMemo()
    with pytest.raises(ConsulAnswerError):
        decode_entries(b'[{"Node":{"Node":NaN}}]', strict, "answer", memo)
    assert decode_entries(b"[]", strict, "answer", memo) == ()


async def test_a_watch_keeps_the_objects_of_the_instances_a_check_flip_left_alone() -> None:
    """Against the emulator (its answers are Consul's ``?pretty`` layout): after one check
    flips, every other instance's entry and endpoint are the very objects of the last update,
    and the flipped one is a new object with the new state."""
    async with ConsulEmulator(["dc1"]) as consul:
        dc1 = consul.dc("dc1")
        config = ConsulConfig.for_addresses(dc1.http_url.removeprefix("http://"))
        async with ConsulClient(config) as client:
            for i in range(6):
                await client.agent_service_register(
                    {
                        "Name": "web",
                        "ID": f"web-{i}",
                        "Port": 9000 + i,
                        "Check": {"CheckID": f"web-{i}-ttl", "TTL": "15m", "Status": "passing"},
                    }
                )
            async with WatchRegistry(client, WATCH) as registry:
                sub = registry.subscribe(HealthServiceSpec("web", passing=False))
                async with asyncio.timeout(10):
                    first = (await sub.next_update()).value
                    assert isinstance(first, HealthAnswer) and len(first) == 6
                    dc1.set_check_status("web-3-ttl", "critical", "down")
                    second = (await sub.next_update()).value
                assert isinstance(second, HealthAnswer)
                assert second.entries[3].status == "critical"
                assert second.entries[3] is not first.entries[3]
                for i in (0, 1, 2, 4, 5):
                    assert second.entries[i] is first.entries[i]
                    assert second.endpoints[i] is first.endpoints[i]
