"""An ACL token kept in a file (``CONSUL_HTTP_TOKEN_FILE``) and re-read when the file changes.

Consul's Go client reads the file once, so rotating the token (Vault agent, a Kubernetes
projected volume, a cron job) means restarting every process. :class:`TokenFile` looks at the
file's identity (inode, size, modification time) at most every ``check_interval`` seconds and
re-reads it only when that changed; :meth:`TokenFile.reload` re-reads it at once (the client
does so after a 403 answer). A file that cannot be read, or holds no usable token, keeps the last
good token (logged without the token). The clock is injected; nothing here sleeps.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from mcresolve.consul.config import DEFAULT_TOKEN_FILE_CHECK_INTERVAL, read_token_file
from mcresolve.consul.errors import ConsulConfigError

log = logging.getLogger("mcresolve.consul")

#: What identifies one version of the file: (device, inode, size, modification time in ns).
Signature = tuple[int, int, int, int]


def _signature(path: str) -> Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class TokenFile:
    """The current token of a token file.

    Args:
        path: the file.
        fallback: the token used while the file holds none (``CONSUL_HTTP_TOKEN``).
        check_interval: seconds between two looks at the file's identity.
        clock: monotonic clock, seconds.
    """

    __slots__ = ("_checked", "_clock", "_fallback", "_interval", "_path", "_signature", "_token")

    def __init__(
        self,
        path: str,
        *,
        fallback: str | None = None,
        check_interval: float = DEFAULT_TOKEN_FILE_CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not check_interval > 0:
            raise ValueError(f"check_interval must be > 0 seconds, got {check_interval!r}")
        self._path = path
        self._fallback = fallback
        self._interval = check_interval
        self._clock = clock
        self._signature: Signature | None = None
        self._token: str | None = fallback
        self._checked = clock()
        self._read(_signature(path))

    def __repr__(self) -> str:
        return f"TokenFile({self._path!r}, token={'set' if self._token else 'none'})"

    @property
    def path(self) -> str:
        """The file."""
        return self._path

    def current(self) -> str | None:
        """The token to send now: re-read first if the check interval has passed and the file
        changed since the last read."""
        now = self._clock()
        if now - self._checked >= self._interval:
            self._checked = now
            signature = _signature(self._path)
            if signature != self._signature:
                self._read(signature)
        return self._token

    def reload(self) -> bool:
        """Re-read the file now, whether it looks changed or not (after a 403 answer: the
        token may have been replaced within the same second and size). Returns whether the
        token changed."""
        before = self._token
        self._checked = self._clock()
        self._read(_signature(self._path))
        return self._token != before

    def _read(self, signature: Signature | None) -> None:
        try:
            token = read_token_file(self._path)
        except ConsulConfigError as error:
            # The message names the file, never the content. Keep the last good token.
            log.warning("consul: keeping the last token: %s", error)
            return
        self._signature = signature
        self._token = token if token is not None else self._fallback
