"""``GET /healthz``: no key, no storage access; says the process is up and routing."""

from fastapi import APIRouter

from ..schemas import Health

router = APIRouter(tags=["ops"])


@router.get("/healthz", summary="Liveness: 200 once the server is ready", response_model=Health)
def healthz() -> Health:
    return Health()
