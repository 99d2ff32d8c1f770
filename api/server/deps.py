"""Dependencies of the routers, as `Annotated` aliases: the settings, the sweep service, and access checks.

They are `async` because none of them blocks: FastAPI would otherwise run each in a worker thread.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.server.errors import Unauthorized
from api.server.service import SweepService
from api.server.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="SHIFTSWEEP_API_TOKEN of the service")


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_service(request: Request) -> SweepService:
    return request.app.state.service


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[SweepService, Depends(get_service)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _check_token(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> None:
    expected = settings.api_token
    if expected is None:
        return  # a service without a token listens on localhost only (see `shiftsweep serve`)
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing credentials: send the header 'Authorization: Bearer <SHIFTSWEEP_API_TOKEN>'")
    if not secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise Unauthorized("invalid token")


async def require_write(settings: SettingsDep, credentials: Credentials) -> None:
    """Mutating endpoints always need the token when the service has one."""
    _check_token(settings, credentials)


async def require_read(settings: SettingsDep, credentials: Credentials) -> None:
    """Read endpoints need it only when `protect_reads` is set."""
    if settings.protect_reads:
        _check_token(settings, credentials)


WriteAccess = Depends(require_write)
ReadAccess = Depends(require_read)
