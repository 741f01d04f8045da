"""The arguments of ResilientMinio's and AsyncResilientMinio's methods are checked before
anything is sent: a wrong type is a ``TypeError``, a value out of range a ``ValueError``, and
the message starts with the parameter's name (minio itself raised ``expected string or
bytes-like object``, ``'>=' not supported between instances of 'str' and 'int'``, an empty
``TypeError``...). The client points at a closed loopback port: a call that passes the checks
ends in the pool's own error, quickly."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcresolve.errors import McResolveError
from mcresolve.minio import AsyncResilientMinio, ResilientMinio
from mcresolve.pool import EndpointPool
from mcresolve.pool.call_policy import CallPolicy

QUICK = CallPolicy(attempt_timeout=0.2, deadline=0.3, max_attempts=1)


@pytest.fixture(scope="module")
def client() -> Iterator[ResilientMinio]:
    with ResilientMinio(
        "static://127.0.0.1:9", "k", "s", secure=False, region="us-east-1", call_policy=QUICK
    ) as s3:
        yield s3


def _drain(result: Any) -> Any:
    return list(result) if isinstance(result, Iterator) else result


@pytest.mark.parametrize(
    ("call", "exception", "message"),
    [
        (lambda c: c.stat_object(None, "k"), TypeError, "bucket_name must be a string"),
        (lambda c: c.stat_object("bucket", None), TypeError, "object_name must be a string"),
        (lambda c: c.stat_object("bucket", ""), ValueError, "object_name must not be empty"),
        (lambda c: c.bucket_exists("a b"), ValueError, "bucket_name: invalid bucket name"),
        (lambda c: c.get_object("bucket", "k", offset=-1), ValueError, "offset must be >= 0"),
        (lambda c: c.get_object("bucket", "k", length="x"), TypeError, "length must be an int"),
        (
            lambda c: c.put_object("bucket", "k", io.BytesIO(b"x"), "1"),
            TypeError,
            "length must be an int",
        ),
        (
            lambda c: c.put_object("bucket", "k", io.BytesIO(b"x"), -5),
            ValueError,
            "length must be >= -1",
        ),
        (lambda c: c.put_object("bucket", "k", "abc", 3), TypeError, "data must be a binary"),
        (
            lambda c: c.put_object("bucket", "k", io.BytesIO(b"x"), -1),
            ValueError,
            "length -1 (size unknown) needs a part_size",
        ),
        (
            lambda c: c.put_object("bucket", "k", io.BytesIO(b"x"), 1, part_size=1),
            ValueError,
            "part_size must be 0",
        ),
        (lambda c: c.stat_object("bucket", "a/../b"), ValueError, "object_name: object name"),
        (
            lambda c: c.put_object("bucket", "k", io.BytesIO(b"x"), 1, metadata={"a b": "1"}),
            ValueError,
            "metadata has a key that is not an HTTP header name",
        ),
        (
            lambda c: c.put_object("bucket", "k", io.BytesIO(b"x"), 1, content_type="a\r\nb"),
            ValueError,
            "content_type must hold header-safe text",
        ),
        (lambda c: c.list_objects(123), TypeError, "bucket_name must be a string"),
        (lambda c: c.list_objects("bucket", recursive="yes"), TypeError, "recursive must be"),
        (lambda c: c.remove_objects("bucket", None), TypeError, "delete_object_list must be"),
        (lambda c: c.presigned_get_object("bucket", "k", expires=3600), TypeError, "expires"),
        (lambda c: c.public_url(None, "k"), TypeError, "bucket_name must be a string"),
        (lambda c: c.set_app_info(None, "1"), TypeError, "app_name must be a string"),
        (lambda c: c.client_for(None), TypeError, "endpoint must be an Endpoint"),
        (lambda c: c.with_policy(5), TypeError, "policy must be"),
    ],
)
def test_a_wrong_argument_is_refused_by_name(
    client: ResilientMinio,
    call: Callable[[ResilientMinio], Any],
    exception: type[Exception],
    message: str,
) -> None:
    with pytest.raises(exception) as info:
        _drain(call(client))
    assert str(info.value).startswith(message), str(info.value)


def test_data_shorter_than_length_is_minios_oserror_and_names_length(
    client: ResilientMinio,
) -> None:
    """minio raises ``OSError`` (``stream having not enough data``); code catching that keeps
    working, and the message now starts with the parameter at fault."""
    with pytest.raises(OSError, match=r"^length 5 is more than data holds") as info:
        client.put_object("bucket", "k", io.BytesIO(b"abc"), 5)
    assert isinstance(info.value, ValueError)


HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=1),
    st.just(timedelta(seconds=-1)),
    st.just(object()),
)

#: (method, valid arguments); one of them is replaced by a hostile value.
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("stat_object", {"bucket_name": "bucket", "object_name": "k", "version_id": None}),
    (
        "get_object",
        {"bucket_name": "bucket", "object_name": "k", "offset": 0, "length": 0},
    ),
    (
        "put_object",
        {
            "bucket_name": "bucket",
            "object_name": "k",
            "data": io.BytesIO(b"x"),
            "length": 1,
            "content_type": "text/plain",
            "metadata": None,
        },
    ),
    (
        "list_objects",
        {"bucket_name": "bucket", "prefix": "a/", "recursive": True, "start_after": None},
    ),
    ("remove_object", {"bucket_name": "bucket", "object_name": "k"}),
    ("bucket_exists", {"bucket_name": "bucket"}),
    ("presigned_get_object", {"bucket_name": "bucket", "object_name": "k"}),
]


@settings(
    max_examples=int(os.environ.get("ARGUMENT_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    call=st.sampled_from(CALLS),
    data=st.data(),
    value=HOSTILE,
)
def test_any_argument_is_refused_by_name_or_reaches_the_pool(
    client: ResilientMinio, call: tuple[str, dict[str, Any]], data: st.DataObject, value: Any
) -> None:
    """Invariant: whatever one argument is, the call returns, raises the pool's own error
    (the checks passed and it was sent to the closed port), or raises ``TypeError``/
    ``ValueError`` whose message starts with that argument's name — never another error."""
    method, valid = call
    name = data.draw(st.sampled_from(sorted(valid)))
    kwargs = {**valid, name: value}
    if "data" in kwargs and hasattr(kwargs["data"], "seek"):
        kwargs["data"] = io.BytesIO(b"x")
    try:
        _drain(getattr(client, method)(**kwargs))
    except McResolveError:
        pass
    except (TypeError, ValueError) as exc:
        assert str(exc).startswith(name), (method, name, value, str(exc))


def test_async_listing_checks_its_arguments_when_called() -> None:
    """Not at the first ``async for``: ``list_objects(123)`` raises where it is written."""

    async def run() -> None:
        pool = EndpointPool("static://127.0.0.1:9")
        await pool.start()
        try:
            client = AsyncResilientMinio(pool, "k", "s", secure=False, region="us-east-1")
            try:
                with pytest.raises(TypeError, match=r"^bucket_name must be a string"):
                    client.list_objects(123)
                with pytest.raises(TypeError, match=r"^delete_object_list must be"):
                    client.remove_objects("bucket", None)
                with pytest.raises(ValueError, match=r"^offset must be >= 0"):
                    await client.get_object("bucket", "k", offset=-1)
                with pytest.raises(TypeError, match=r"^object_name must be a string"):
                    await client.read_object("bucket", None)
            finally:
                await client.aclose()
        finally:
            await pool.aclose()

    asyncio.run(run())
