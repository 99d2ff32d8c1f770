"""What a service without a token answers: only local clients, only local names, only JSON bodies.

Without a token anyone who can reach the port controls the sweeps, so such a service must be reachable from this
machine only. Binding to 127.0.0.1 (what `shiftsweep serve` insists on) is not enough on its own: a web page the
user opens can POST to localhost as a "simple" cross-site request (text/plain, no preflight), and a DNS-rebinding
page reaches it under a foreign Host name. This check runs in the app itself, however the app is started.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Collection
from urllib.parse import urlsplit

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from api import is_loopback
from api.server.body import is_json_media

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _host_name(host: str) -> str:
    """`example.com:8000` -> `example.com`; `[::1]:8000` -> `::1`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def refusal(request: Request, allowed_hosts: Collection[str]) -> tuple[int, str] | None:
    """(status, reason) when a tokenless service must not answer `request`; None when it may."""
    client = request.client.host if request.client else ""
    try:
        ipaddress.ip_address(client.strip("[]"))
        if not is_loopback(client):
            return 403, f"this service has no token and answers only clients on this machine, not {client}"
    except ValueError:
        pass  # not an IP: a Unix socket or an in-process client, local by construction
    allowed = {h.lower() for h in allowed_hosts}
    host = _host_name(request.headers.get("host", ""))
    if host not in allowed:
        names = ", ".join(sorted(allowed))
        return 403, f"Host {host!r} is not served by a service without a token; use one of: {names}"
    origin = request.headers.get("origin")
    if origin is not None and (urlsplit(origin).hostname or origin).lower() not in allowed:
        return 403, f"requests from the web origin {origin!r} are refused by a service without a token"
    if request.method in MUTATING:
        content_type = request.headers.get("content-type")
        if content_type is not None and not is_json_media(content_type):
            return 415, f"a service without a token accepts only JSON bodies, not {content_type!r}"
    return None


Handler = Callable[[Request], Awaitable[Response]]


def local_only(allowed_hosts: Collection[str]) -> Callable[[Request, Handler], Awaitable[Response]]:
    """The HTTP middleware a tokenless app installs."""

    async def middleware(request: Request, call_next: Handler) -> Response:
        refused = refusal(request, allowed_hosts)
        if refused is not None:
            return JSONResponse({"detail": refused[1]}, status_code=refused[0])
        return await call_next(request)

    return middleware
