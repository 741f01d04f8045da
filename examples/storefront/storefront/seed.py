"""Seed the bucket with the sample catalog: ``python -m storefront.seed [--wait SECONDS]``.

Reads the same environment as the storefront. Creates the bucket when missing and uploads every
sample object whose content differs from what is stored (compared by MD5 ETag), so running it again
changes nothing. Exit status: 0 on success, 1 when storage failed, 2 on bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from minio.error import S3Error

from .config import ConfigError, Settings
from .sample import SeedObject, sample_objects
from .storage import ObjectClient, build_object_client

_BUCKET_ALREADY_THERE = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})


@dataclass
class SeedReport:
    """What a seeding run did."""

    created_bucket: bool = False
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


async def seed_catalog(
    client: ObjectClient, bucket: str, objects: Iterable[SeedObject]
) -> SeedReport:
    """Make ``bucket`` hold ``objects`` (idempotent)."""
    report = SeedReport()
    if not await client.bucket_exists(bucket):
        try:
            await client.make_bucket(bucket)
            report.created_bucket = True
        except S3Error as error:
            if error.code not in _BUCKET_ALREADY_THERE:
                raise
    for item in objects:
        if await _stored_etag(client, bucket, item.key) == hashlib.md5(item.data).hexdigest():
            report.unchanged.append(item.key)
            continue
        await client.put_object(
            bucket, item.key, io.BytesIO(item.data), len(item.data), content_type=item.content_type
        )
        report.uploaded.append(item.key)
    return report


async def wait_for_storage(client: ObjectClient, bucket: str, timeout_s: float) -> None:
    """Poll storage until it answers (or ``timeout_s`` passes, then raise the last error)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await client.bucket_exists(bucket)
            return
        except Exception:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)


async def _stored_etag(client: ObjectClient, bucket: str, key: str) -> str | None:
    try:
        stat = await client.stat_object(bucket, key)
    except S3Error as error:
        if error.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
            return None
        raise
    etag = getattr(stat, "etag", None)
    return etag.strip('"') if isinstance(etag, str) else None


async def _run(settings: Settings, wait_s: float) -> SeedReport:
    client = build_object_client(settings)
    await client.start()
    try:
        if wait_s > 0:
            await wait_for_storage(client, settings.bucket, wait_s)
        return await seed_catalog(client, settings.bucket, sample_objects())
    finally:
        await client.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m storefront.seed", description=__doc__)
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS for storage to answer before seeding",
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as error:
        print(f"storefront.seed: bad configuration: {error}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(_run(settings, args.wait))
    except Exception as error:
        print(f"storefront.seed: storage failed: {error}", file=sys.stderr)
        return 1
    created = "created" if report.created_bucket else "existing"
    print(
        f"seeded {created} bucket {settings.bucket!r} at {settings.storage_target}: "
        f"{len(report.uploaded)} uploaded, {len(report.unchanged)} unchanged"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
