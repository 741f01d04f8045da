"""Loading the Consul 1.0.8 golden recordings (``../shared/consul-golden``, see ``golden_dir``).

Each file is a list of entries: HTTP exchanges, DNS exchanges, dig transcripts and notes. This
module only parses them into typed records (with the send time of every exchange derived from
``at_ms - elapsed_ms``); the replay lives in ``golden_replay.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from mcresolve.testing.consul.golden_files import golden_dir

GOLDEN_DIR = golden_dir()

#: recorded agent HTTP host -> datacenter
RECORDED_HOSTS = {"127.0.0.1:8520": "dc1", "127.0.0.1:8530": "dc2"}
#: recorded address of the HTTP-check stub server
RECORDED_STUB = "127.0.0.1:18080"


@dataclass
class Entry:
    """One element of a recording file."""

    file: str
    position: int
    step: str
    raw: dict[str, Any]

    @property
    def kind(self) -> str:
        if "request" in self.raw:
            return "http"
        if "dns_request" in self.raw:
            return "dns"
        if "dig_command" in self.raw:
            return "dig"
        return "note"

    @property
    def at_ms(self) -> float | None:
        value = self.raw.get("at_ms")
        return float(value) if value is not None else None

    @property
    def elapsed_ms(self) -> float:
        return float(self.raw.get("elapsed_ms") or 0.0)

    @property
    def send_ms(self) -> float | None:
        """When the request was sent, relative to its segment's start."""
        if self.at_ms is None:
            return None
        return self.at_ms - self.elapsed_ms

    @property
    def label(self) -> str:
        return f"{self.file}#{self.position} ({self.step})"


@dataclass
class HttpExchange(Entry):
    """An HTTP request and Consul's recorded answer."""

    @property
    def method(self) -> str:
        return str(self.raw["request"]["method"])

    @property
    def host(self) -> str:
        return str(self.raw["request"]["host"])

    @property
    def datacenter(self) -> str:
        return RECORDED_HOSTS[self.host]

    @property
    def path(self) -> str:
        return str(self.raw["request"]["path"])

    @property
    def route(self) -> str:
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for key, value in parse_qsl(urlsplit(self.path).query, keep_blank_values=True):
            out.setdefault(key, []).append(value)
        return out

    def body_bytes(self) -> bytes | None:
        request = self.raw["request"]
        if "body_raw" in request:
            return str(request["body_raw"]).encode("utf-8")
        if "body" in request:
            return json.dumps(request["body"]).encode("utf-8")
        return None

    @property
    def response(self) -> dict[str, Any]:
        return dict(self.raw["response"])

    @property
    def status(self) -> int:
        return int(self.raw["response"]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.raw["response"].get("headers", {}))

    @property
    def body_format(self) -> str:
        return str(self.raw["response"].get("body_format", ""))

    @property
    def body(self) -> Any:
        return self.raw["response"].get("body")


@dataclass
class RecordedFile:
    """One scenario file."""

    name: str
    entries: list[Entry] = field(default_factory=list)

    @property
    def http(self) -> list[HttpExchange]:
        return [e for e in self.entries if isinstance(e, HttpExchange)]


def load_file(path: Path) -> RecordedFile:
    data = json.loads(path.read_text())
    recorded = RecordedFile(path.name)
    for position, raw in enumerate(data):
        cls = HttpExchange if "request" in raw else Entry
        recorded.entries.append(cls(path.name, position, str(raw.get("step", "")), raw))
    return recorded


def load_recordings(directory: Path = GOLDEN_DIR) -> list[RecordedFile]:
    """Every ``NN_*.json`` file, in file-number order."""
    return [load_file(p) for p in sorted(directory.glob("[0-9][0-9]*.json"))]
