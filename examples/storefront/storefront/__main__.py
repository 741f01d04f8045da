"""``python -m storefront``: serve the shop configured by the environment until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from .config import ConfigError, Settings
from .service import serve


def main() -> int:
    """Read the environment, serve, exit 0 after a clean shutdown (2 on bad configuration)."""
    logging.basicConfig(
        level=(os.environ.get("STOREFRONT_LOG_LEVEL", "").strip() or "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as error:
        print(f"storefront: bad configuration: {error}", file=sys.stderr)
        return 2

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)

        def announce(url: str) -> None:
            print(f"storefront: serving on {url}", flush=True)

        await serve(settings, stop, on_ready=announce)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
