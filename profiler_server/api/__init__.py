"""REST routes, one module per resource; handlers stay thin and call profiler_server.services."""

from fastapi import APIRouter

from profiler_server.api import devices, health, jobs, lut, measurements, networks

# Included one by one into the app (not nested under another router): routing a request
# through nested routers costs measurably on the GET /lut hot path.
routers: list[APIRouter] = [lut.router, health.router, devices.router, measurements.router, jobs.router, networks.router]
