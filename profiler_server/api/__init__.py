"""REST routes, one module per resource; handlers stay thin and call profiler_server.services."""

from fastapi import APIRouter

from profiler_server.api import devices, health, jobs, lut, measurements

router = APIRouter()
for module in (health, devices, lut, measurements, jobs):
    router.include_router(module.router)
