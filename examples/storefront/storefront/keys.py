"""Object keys as they travel through URLs: which keys may be served, and how to quote them.

S3 keys are arbitrary UTF-8 strings, but a key with ``.``/``..`` path segments can be rewritten by
URL normalisation somewhere between the browser and the storage node (and then address another
bucket), so such keys are never requested from storage. Everything else is served, quoted as a
single path segment.
"""

from __future__ import annotations

from urllib.parse import quote

#: S3's limit on the UTF-8 length of a key.
MAX_KEY_BYTES = 1024


def is_servable_key(key: str) -> bool:
    """Whether ``key`` may be passed to storage: non-empty, at most 1024 UTF-8 bytes, no control
    characters, no leading ``/`` and no ``.`` or ``..`` path segment."""
    if not key or key.startswith("/"):
        return False
    try:
        if len(key.encode("utf-8")) > MAX_KEY_BYTES:
            return False
    except UnicodeEncodeError:  # lone surrogates
        return False
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in key):
        return False
    return all(segment not in (".", "..") for segment in key.split("/"))


def quote_key(key: str) -> str:
    """``key`` as one URL path segment: every reserved character, ``/`` included, percent-encoded,
    so that no browser or proxy can treat part of it as a separate segment."""
    return quote(key, safe="")
