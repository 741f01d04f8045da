"""Comparing DNS answers with exchanges recorded from real Consul (``consul-golden`` files).

A recorded DNS exchange is ``{"dns_request": {...}, "dns_response": {...}}`` where each section
lists records as dnspython shows them (identical records on the wire merged into one RRset).
Values that differ by nature are compared by rule:

* rcode, header flags, the answer's owner names, record types and counts, and every TTL are
  compared exactly;
* SRV answers: ``1 1 <port> <node>.node.<dc>.<domain>.``, each (port, target) one of the
  instances seen anywhere in the recordings, targets in the datacenters the recording answered
  from, no duplicates (which subset and which order are random);
* SOA: ``ns.<domain> hostmaster.<domain> <serial> 3600 600 86400 0`` with the serial within a
  few seconds of the clock (Consul uses the unix time);
* additional section: exactly one address record per SRV target of *this* answer, and node
  meta TXT records for the agent nodes exactly when the recording kept them (an answer trimmed
  for UDP loses them).

``dig_output`` texts are compared on the header (status, flags, section counts as on the wire,
EDNS UDP size), which are deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype

_SRV = re.compile(r"^1 1 (\d+) ([^.]+)\.node\.([^.]+)\.(.+)$")
_SOA = re.compile(r"^ns\.(\S+) hostmaster\.(\S+) (\d+) 3600 600 86400 0$")
_DIG_HEADER = re.compile(r"status: (\w+),")
_DIG_FLAGS = re.compile(
    r"flags: ([a-z ]*); QUERY: (\d+), ANSWER: (\d+), AUTHORITY: (\d+), ADDITIONAL: (\d+)"
)
_DIG_EDNS = re.compile(r"EDNS: version: (\d+), flags:[^;]*; udp: (\d+)")
_DIG_COMMAND = re.compile(r"^dig @(\S+) -p (\d+) (.*)$")
_SECTIONS = ("answer", "authority", "additional")
#: dig 9.18's default EDNS UDP payload size.
DIG_EDNS_PAYLOAD = 1232


@dataclass(frozen=True)
class RecordedQuestion:
    """What was asked in a recorded exchange."""

    server: str
    qname: str
    qtype: str
    transport: str
    rd: bool
    edns_payload: int | None

    def to_message(self) -> dns.message.Message:
        """The query message, as the recorder sent it."""
        query = dns.message.make_query(
            self.qname,
            self.qtype,
            use_edns=self.edns_payload is not None,
            payload=self.edns_payload or DIG_EDNS_PAYLOAD,
        )
        if not self.rd:
            query.flags &= ~dns.flags.RD
        return query

    @classmethod
    def from_exchange(cls, exchange: Mapping[str, Any]) -> RecordedQuestion:
        """The question of a recorded ``dns_request``."""
        request = exchange["dns_request"]
        return cls(
            server=str(request["server"]),
            qname=str(request["qname"]),
            qtype=str(request["qtype"]),
            transport=str(request["transport"]),
            rd=bool(request.get("rd", True)),
            edns_payload=request.get("edns_payload"),
        )

    @classmethod
    def from_dig(cls, exchange: Mapping[str, Any]) -> RecordedQuestion:
        """The question of a recorded ``dig_command`` (dig: UDP, RD, EDNS 1232 unless
        ``+noedns``)."""
        match = _DIG_COMMAND.match(str(exchange["dig_command"]))
        if match is None:
            raise ValueError(f"unsupported dig command {exchange['dig_command']!r}")
        words = match.group(3).split()
        options = [word for word in words if word.startswith("+")]
        qname, qtype = [word for word in words if not word.startswith("+")]
        payload = None if "+noedns" in options else DIG_EDNS_PAYLOAD
        return cls(f"{match.group(1)}:{match.group(2)}", qname, qtype, "udp", True, payload)


def known_srv_instances(recordings: Iterable[Sequence[Mapping[str, Any]]]) -> set[tuple[int, str]]:
    """Every (port, target) pair that real Consul answered in the given recording files."""
    known: set[tuple[int, str]] = set()
    for recording in recordings:
        for item in recording:
            response = item.get("dns_response")
            if not response:
                continue
            for rr in response["answer"]:
                if rr["type"] == "SRV":
                    _, _, port, target = str(rr["rdata"]).split()
                    known.add((int(port), target.lower()))
    return known


def _records(message: dns.message.Message, section: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for rrset in getattr(message, section):
        for rdata in rrset:
            out.append(
                {
                    "name": rrset.name.to_text(),
                    "ttl": rrset.ttl,
                    "class": dns.rdataclass.to_text(rrset.rdclass),
                    "type": dns.rdatatype.to_text(rrset.rdtype),
                    "rdata": rdata.to_text(),
                }
            )
    return out


def response_as_recorded(wire: bytes) -> dict[str, Any]:
    """A response in the recordings' JSON shape (``rcode``, ``flags``, sections)."""
    message = dns.message.from_wire(wire)
    flags = dns.flags.to_text(message.flags).split()
    return {
        "rcode": dns.rcode.to_text(message.rcode()),
        "flags": flags,
        **{section: _records(message, section) for section in _SECTIONS},
    }


def compare_response(
    recorded: Mapping[str, Any],
    wire: bytes,
    *,
    known_instances: set[tuple[int, str]],
    now: float,
    serial_slack: float = 5.0,
) -> list[str]:
    """Differences between a recorded ``dns_response`` and an emulator response (wire), by the
    rules of this module; an empty list means they agree."""
    got = response_as_recorded(wire)
    problems: list[str] = []
    if got["rcode"] != recorded["rcode"]:
        problems.append(f"rcode {got['rcode']} != recorded {recorded['rcode']}")
    if sorted(got["flags"]) != sorted(recorded["flags"]):
        problems.append(f"flags {got['flags']} != recorded {recorded['flags']}")
    problems += _compare_answer(recorded["answer"], got["answer"], known_instances)
    problems += _compare_authority(recorded["authority"], got["authority"], now, serial_slack)
    problems += _compare_additional(recorded, got)
    return problems


def _compare_answer(
    recorded: list[dict[str, Any]], got: list[dict[str, Any]], known: set[tuple[int, str]]
) -> list[str]:
    problems: list[str] = []
    if len(got) != len(recorded):
        problems.append(f"answer has {len(got)} records, recorded {len(recorded)}")
    if sorted(r["type"] for r in got) != sorted(r["type"] for r in recorded):
        problems.append("answer record types differ from the recording")
    if {r["name"] for r in got} != {r["name"] for r in recorded}:
        problems.append(f"answer owner names {sorted({r['name'] for r in got})} != recorded")
    if {(r["ttl"], r["class"]) for r in got} - {(r["ttl"], r["class"]) for r in recorded}:
        problems.append("answer TTL/class differ from the recording")
    recorded_dcs = set()
    for rr in recorded:
        if rr["type"] == "SRV":
            match = _SRV.match(rr["rdata"])
            if match:
                recorded_dcs.add(match.group(3))
    seen: set[str] = set()
    for rr in got:
        if rr["rdata"] in seen and rr["type"] == "SRV":
            problems.append(f"duplicate SRV answer {rr['rdata']}")
        seen.add(rr["rdata"])
        if rr["type"] == "SRV":
            match = _SRV.match(rr["rdata"])
            if match is None:
                problems.append(f"SRV rdata {rr['rdata']!r} not '1 1 <port> <node>.node.<dc>.'")
                continue
            port, target = int(match.group(1)), rr["rdata"].split()[3].lower()
            if (port, target) not in known:
                problems.append(f"SRV {rr['rdata']} is no recorded instance")
            if match.group(3) not in recorded_dcs:
                problems.append(f"SRV {rr['rdata']} not in recorded datacenters {recorded_dcs}")
        elif {r["rdata"] for r in recorded if r["type"] == rr["type"]} != {
            r["rdata"] for r in got if r["type"] == rr["type"]
        }:
            problems.append(f"{rr['type']} answer rdata differs from the recording")
    return problems


def _compare_authority(
    recorded: list[dict[str, Any]], got: list[dict[str, Any]], now: float, slack: float
) -> list[str]:
    problems: list[str] = []
    if [(r["name"], r["ttl"], r["type"]) for r in got] != [
        (r["name"], r["ttl"], r["type"]) for r in recorded
    ]:
        problems.append(f"authority {got} != recorded {recorded}")
        return problems
    for rr, want in zip(got, recorded, strict=True):
        if rr["type"] != "SOA":
            continue
        match, want_match = _SOA.match(rr["rdata"]), _SOA.match(want["rdata"])
        if match is None or want_match is None:
            problems.append(f"SOA {rr['rdata']!r} has not the recorded shape")
            continue
        if match.group(1, 2) != want_match.group(1, 2):
            problems.append(f"SOA names {match.group(1, 2)} != {want_match.group(1, 2)}")
        if abs(int(match.group(3)) - now) > slack:
            problems.append(f"SOA serial {match.group(3)} is not the unix time {now:.0f}")
    return problems


def _compare_additional(recorded: Mapping[str, Any], got: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    recorded_extra: list[dict[str, Any]] = recorded["additional"]
    extra: list[dict[str, Any]] = got["additional"]
    answer_ttls = {r["ttl"] for r in got["answer"]}
    targets = [r["rdata"].split()[3] for r in got["answer"] if r["type"] == "SRV"]
    if not targets:
        if extra != recorded_extra:
            problems.append(f"additional {extra} != recorded {recorded_extra}")
        return problems
    address_names = [r["name"] for r in extra if r["type"] in ("A", "AAAA", "CNAME")]
    if sorted(address_names) != sorted({t for t in targets}):
        problems.append(f"additional address records {address_names} != SRV targets {targets}")
    if {r["type"] for r in extra} - {"A", "AAAA", "CNAME", "TXT"}:
        problems.append("unexpected record types in the additional section")
    if {r["ttl"] for r in extra} - answer_ttls:
        problems.append("additional TTLs differ from the answer TTL")
    recorded_addresses = {r["rdata"] for r in recorded_extra if r["type"] == "A"}
    if {r["rdata"] for r in extra if r["type"] == "A"} - recorded_addresses:
        problems.append("additional addresses differ from the recording")
    txt_names = {r["name"] for r in extra if r["type"] == "TXT"}
    if txt_names - set(targets):
        problems.append(f"TXT records for names that are no target: {txt_names}")
    recorded_txt = [r for r in recorded_extra if r["type"] == "TXT"]
    if {r["rdata"] for r in extra if r["type"] == "TXT"} - {r["rdata"] for r in recorded_txt} and (
        recorded_txt
    ):
        problems.append("TXT rdata differs from the recording")
    recorded_targets = {r["rdata"].split()[3] for r in recorded["answer"] if r["type"] == "SRV"}
    recorded_txt_names = {r["name"] for r in recorded_txt}
    if recorded_txt:
        # untrimmed: every agent node (one with TXT in the recording) keeps its TXT
        missing = {t for t in targets if t in recorded_txt_names} - txt_names
        if missing:
            problems.append(f"TXT records missing for {sorted(missing)}")
    elif recorded_targets & {"n1.node.dc1.consul.", "n2.node.dc2.consul."} and txt_names:
        problems.append(f"TXT records {sorted(txt_names)} where the recording has none")
    return problems


def compare_dig(dig_output: str, wire: bytes) -> list[str]:
    """Differences between a recorded ``dig_output`` header and an emulator response (wire):
    status, flags, section counts as on the wire (OPT counted in ADDITIONAL), EDNS UDP size."""
    message = dns.message.from_wire(wire, one_rr_per_rrset=True)
    problems: list[str] = []
    status = _DIG_HEADER.search(dig_output)
    flags = _DIG_FLAGS.search(dig_output)
    if status is None or flags is None:
        return ["dig output has no header"]
    if dns.rcode.to_text(message.rcode()) != status.group(1):
        problems.append(f"status {dns.rcode.to_text(message.rcode())} != dig {status.group(1)}")
    got_flags = sorted(dns.flags.to_text(message.flags).lower().split())
    if got_flags != sorted(flags.group(1).split()):
        problems.append(f"flags {got_flags} != dig {flags.group(1)}")
    counts = (
        len(message.question),
        len(message.answer),
        len(message.authority),
        len(message.additional) + (1 if message.edns >= 0 else 0),
    )
    want = tuple(int(flags.group(i)) for i in range(2, 6))
    if counts != want:
        problems.append(f"section counts {counts} != dig {want}")
    edns = _DIG_EDNS.search(dig_output)
    if edns is None:
        if message.edns >= 0:
            problems.append("response has an OPT record, dig showed none")
    elif message.edns != int(edns.group(1)) or message.payload != int(edns.group(2)):
        problems.append(
            f"EDNS version/udp {message.edns}/{message.payload} != dig {edns.group(1, 2)}"
        )
    return problems


def dig_query(question: RecordedQuestion) -> dns.message.Message:
    """The query dig 9.18 sends (RD, EDNS 1232 with a client cookie unless ``+noedns``)."""
    query = question.to_message()
    if question.edns_payload is not None:
        query.use_edns(
            0, 0, question.edns_payload, options=[dns.edns.CookieOption(b"\x01" * 8, b"")]
        )
    return query


__all__ = [
    "DIG_EDNS_PAYLOAD",
    "RecordedQuestion",
    "compare_dig",
    "compare_response",
    "dig_query",
    "known_srv_instances",
    "response_as_recorded",
]
