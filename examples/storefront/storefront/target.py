"""Where storage is: ``MINIO_HOST`` (and ``MINIO_PORT``) as an mcresolve target (pure).

The original store takes one host name and one port. Here ``MINIO_HOST`` may be anything
:func:`mcresolve.sources.target.parse_target` accepts, so switching the resolution stage is a
matter of configuration only. The rule (also in ``docs/storefront.md``):

* a full target string (``consul+query://…``, ``consul://…``, ``dns://…``, ``static://…``) is
  used as is, ``MINIO_PORT`` is not applied to it;
* a plain name or address without a port gets ``MINIO_PORT`` appended and is then read the way
  ``parse_target`` reads scheme-less strings: a Consul name
  (``storage-object-minio.query.consul`` is stage 3, ``storage-object-minio.service.consul``
  stage 2, with ``MINIO_PORT`` as the port used when Consul registered none), an IP address
  (``static://``), any other host name (``dns://<host>?type=a&port=<MINIO_PORT>``);
* a plain value that already has a port or is a list (``10.0.0.1:9000,10.0.0.2:9000``) keeps it;
* one exception: ``localhost`` (the original's default) is a static endpoint, because mcresolve's
  DNS resolution asks DNS servers, and ``localhost`` lives in ``/etc/hosts``.
"""

from __future__ import annotations

import ipaddress

from mcresolve.sources.target import TargetError, parse_target

__all__ = ["TargetError", "is_plain_host", "storage_target"]

_LOCALHOST = "localhost"


def is_plain_host(host: str) -> bool:
    """Whether ``host`` is one host name or IP address (no scheme, no port, no list): the kind
    of value a browser could also be given (the default of ``MINIO_EXTERNAL_HOST``)."""
    text = host.strip()
    if not text or "://" in text or "," in text or "/" in text or "?" in text:
        return False
    if text.startswith("[") and text.endswith("]"):
        return _is_ipv6(text[1:-1])
    return _is_ipv6(text) or ":" not in text


def storage_target(host: str, port: int) -> str:
    """The mcresolve target string for ``MINIO_HOST=host`` and ``MINIO_PORT=port``.

    Plain values come back in the canonical form (``static://127.0.0.1:9000``,
    ``consul+query://storage-object-minio?port=9000``), full target strings unchanged. Raises
    :class:`~mcresolve.sources.target.TargetError` (a ``ValueError``) saying what was expected.
    """
    text = host.strip()
    if not text:
        raise TargetError("expected a host name, an IP address or an mcresolve target")
    if "://" in text:
        parse_target(text)  # validate only: the user's string is used as given
        return text
    if is_plain_host(text):
        bracketed = f"[{text}]" if _is_ipv6(text) else text  # "[::1]" stays as it is
        text = f"{bracketed}:{port}"
    if text.split(":", 1)[0].lower() == _LOCALHOST:
        return str(parse_target(f"static://{text}"))
    return str(parse_target(text))


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True
