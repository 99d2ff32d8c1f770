"""/health: the service answers, its registry is readable, and whether the Ray cluster is reachable."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter

from api.server.deps import ServiceDep
from api.server.jobs import BackendUnavailable
from api.server.schemas import HealthPublic, RayHealth

router = APIRouter(prefix="/health", tags=["health"])


def _version() -> str:
    try:
        return version("shiftsweep")
    except PackageNotFoundError:
        return "unknown"


@router.get("", response_model=HealthPublic)
def health(service: ServiceDep) -> HealthPublic:
    """Always open, so that load balancers and the CLI can probe it; a missing cluster is reported, not an error."""
    service.repository.ping()
    backend = service.backend
    ray = RayHealth(reachable=True, address=service.settings.ray_address, dashboard_url=backend.dashboard_url)
    try:
        backend.ping()
        ray.dashboard_url = backend.dashboard_url
    except BackendUnavailable as e:
        ray.reachable, ray.error = False, str(e)
    return HealthPublic(version=_version(), ray=ray)
