"""HTTP clients over an endpoint pool: the failover decisions (:mod:`mcresolve.http.failover`,
pure) and thin adapters for httpx (:mod:`mcresolve.http.httpx`) and aiohttp
(:mod:`mcresolve.http.aiohttp`).

The adapters import their HTTP library, so each is imported by name (``from
mcresolve.http.httpx import AsyncPoolTransport``); this package imports neither.
"""
