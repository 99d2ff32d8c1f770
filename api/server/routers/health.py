"""/health: the service answers, its registry is readable, and whether the Ray cluster is reachable."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter

from api.server.deps import ServiceDep
from api.server.jobs import BackendUnavailable
from api.server.schemas import HealthPublic, RayHealth

router = APIRouter(prefix="/health", tags=["health"])
HEALTH_RAY_TIMEOUT_S = 1.5


def _version() -> str:
    try:
        return version("shiftsweep")
    except PackageNotFoundError:
        return "unknown"


@router.get("", response_model=HealthPublic)
def health(service: ServiceDep) -> HealthPublic:
    """Always open, so that load balancers and the CLI can probe it; a missing cluster is reported, not an error.

    Answers within about 2 s whatever the cluster does: the cluster is given HEALTH_RAY_TIMEOUT_S to answer."""
    service.repository.ping()
    backend = service.backend
    ray = RayHealth(reachable=True, address=service.settings.ray_address, dashboard_url=backend.dashboard_url)
    try:
        backend.ping(timeout_s=HEALTH_RAY_TIMEOUT_S)
        ray.dashboard_url = backend.dashboard_url
    except BackendUnavailable as e:
        ray.reachable, ray.error = False, str(e)
    return HealthPublic(version=_version(), ray=ray)
