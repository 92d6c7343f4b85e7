"""ProfilerClient: the typed HTTP client of the profiler server (httpx; no torch).

    with ProfilerClient("http://127.0.0.1:8000", token=TOKEN) as c:
        fetch = c.get_lut("pixel7", runtime="ort", threads=1)
        fetch = c.get_lut("pixel7", runtime="ort", threads=1, etag=fetch.etag)   # not_modified=True

4xx answers raise ApiError (NotFoundError 404, ConflictError 409, AuthError 401/403) carrying the
server's message and its (field, reason) list; connection failures are retried, then raise
ServerUnreachable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from hwnas.errors import HwnasError
from hwnas.schemas import (
    Calibration,
    CalibrationDetail,
    Device,
    DeviceInfo,
    Health,
    Job,
    JobClaim,
    JobClaimed,
    JobCreate,
    JobCreated,
    JobFail,
    JobHeartbeat,
    Lut,
    LutPage,
    LutQuery,
    LutCalibration,
    LutImport,
    LutImportResult,
    LutQueryResult,
    MeasurementBatch,
    MeasurementBatchResult,
    NetworkMeasurementBatch,
    NetworkTable,
)

M = TypeVar("M", bound=BaseModel)


class ProfilerError(HwnasError):
    """Anything that went wrong talking to the profiler server."""


class ServerUnreachable(ProfilerError):
    """The server could not be reached (after retries)."""


class ApiError(ProfilerError):
    """The server refused the request: HTTP ``status``, its ``detail`` and (field, reason) ``errors``."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        self.status = status
        self.detail = detail
        self.errors = errors or []
        super().__init__(f"HTTP {status}: {detail}")


class NotFoundError(ApiError):
    """404."""


class ConflictError(ApiError):
    """409."""


class AuthError(ApiError):
    """401 (no or unknown token) or 403 (wrong role)."""


@dataclass
class LutFetch:
    """Result of get_lut: the table (None when not modified) and its ETag."""

    lut: Lut | None
    etag: str | None
    not_modified: bool = False


MAX_RETRY_AFTER_S = 10.0


def _retry_after(response: httpx.Response, default: float) -> float:
    """The server's Retry-After (seconds form), capped; ``default`` when absent or unreadable."""
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(response.headers.get("retry-after", ""))))
    except ValueError:
        return default


def _error_for(response: httpx.Response) -> ApiError:
    detail, errors = response.reason_phrase or "error", []
    try:
        body = response.json()
        if isinstance(body, dict):
            detail = str(body.get("detail", detail))
            errors = [e for e in body.get("errors", []) if isinstance(e, dict)]
    except ValueError:
        if response.text.strip():
            detail = response.text.strip()[:500]
    cls = {404: NotFoundError, 409: ConflictError, 401: AuthError, 403: AuthError}.get(response.status_code, ApiError)
    return cls(response.status_code, detail, errors)


class ProfilerClient:
    """Typed access to every endpoint of the profiler server."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.25,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``transport``: httpx's, when requests are not to go over the network (tests: the app in-process)."""
        self.base_url = base_url.rstrip("/")
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        headers = {"User-Agent": "hwnas-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    # ---- plumbing ----------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "ProfilerClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self, method: str, path: str, *, idempotent: bool, ok: tuple[int, ...] = (200, 201), **kwargs: Any
    ) -> httpx.Response:
        """Send, retrying connection failures (any transport failure when ``idempotent``)."""
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                last = exc  # never reached the server: safe to resend anything
            except httpx.TransportError as exc:
                if not idempotent:
                    raise ServerUnreachable(
                        f"{method} {self.base_url}{path}: {exc!r} (not retried: the request may have arrived)"
                    ) from exc
                last = exc
            else:
                if response.status_code in ok:
                    return response
                if response.status_code != 503 or attempt == self.retries:
                    raise _error_for(response)
                # 503: the server rolled the request back (database busy or away): resending is safe for any method.
                time.sleep(_retry_after(response, self.backoff_s * (2**attempt)))
                continue
            if attempt < self.retries:
                time.sleep(self.backoff_s * (2**attempt))
        raise ServerUnreachable(f"cannot reach the profiler server at {self.base_url} ({last!r})") from last

    def _json(
        self, model: type[M], method: str, path: str, *, idempotent: bool = True, body: BaseModel | None = None, **kwargs: Any
    ) -> M:
        if body is not None:
            kwargs["content"] = body.model_dump_json(exclude_unset=False).encode()
            kwargs.setdefault("headers", {})["Content-Type"] = "application/json"
        return model.model_validate_json(self._request(method, path, idempotent=idempotent, **kwargs).content)

    @staticmethod
    def _table_params(runtime: str | None, threads: int | None) -> dict[str, Any]:
        return {k: v for k, v in (("runtime", runtime), ("threads", threads)) if v is not None}

    # ---- endpoints ---------------------------------------------------------------------------
    def health(self) -> Health:
        """GET /healthz (a 503 'degraded' answer is returned, not raised)."""
        response = self._request("GET", "/healthz", idempotent=True, ok=(200, 503))
        return Health.model_validate_json(response.content)

    def put_device(self, name: str, info: DeviceInfo) -> Device:
        """PUT /devices/{name} (agent token)."""
        return self._json(Device, "PUT", f"/devices/{name}", body=info)

    def list_devices(self) -> list[Device]:
        """GET /devices."""
        response = self._request("GET", "/devices", idempotent=True)
        return [Device.model_validate(d) for d in response.json()]

    def get_device(self, name: str) -> Device:
        """GET /devices/{name}."""
        return self._json(Device, "GET", f"/devices/{name}")

    def get_lut(self, device: str, runtime: str | None = None, threads: int | None = None, etag: str | None = None) -> LutFetch:
        """GET /lut/{device}; with ``etag`` an unchanged table comes back as ``not_modified``."""
        headers = {"Accept": "application/json"}
        if etag:
            headers["If-None-Match"] = etag
        response = self._request(
            "GET", f"/lut/{device}", idempotent=True, ok=(200, 304), params=self._table_params(runtime, threads), headers=headers
        )
        new_etag = response.headers.get("ETag", etag)
        if response.status_code == 304:
            return LutFetch(lut=None, etag=new_etag, not_modified=True)
        return LutFetch(lut=Lut.model_validate_json(response.content), etag=new_etag, not_modified=False)

    def get_lut_csv(self, device: str, runtime: str | None = None, threads: int | None = None) -> str:
        """GET /lut/{device}?format=csv."""
        params = {**self._table_params(runtime, threads), "format": "csv"}
        return self._request("GET", f"/lut/{device}", idempotent=True, params=params).text

    def export_lut(self, device: str, fmt: str, runtime: str | None = None, threads: int | None = None) -> str:
        """GET /lut/{device}?format=ofa-yaml|proxyless-yaml: the table in a published YAML layout."""
        params = {**self._table_params(runtime, threads), "format": fmt}
        return self._request("GET", f"/lut/{device}", idempotent=True, params=params).text

    def get_lut_page(
        self,
        device: str,
        runtime: str | None = None,
        threads: int | None = None,
        *,
        sort: str = "median_ms",
        order: str = "asc",
        type: str | None = None,
        key: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> LutPage:
        """GET /lut/{device}/entries: one page of a table, sorted and filtered by the server (the dashboard's view)."""
        params = {k: v for k, v in (("runtime", runtime), ("threads", threads), ("type", type), ("key", key)) if v is not None}
        return self._json(
            LutPage,
            "GET",
            f"/lut/{device}/entries",
            params={**params, "sort": sort, "order": order, "offset": offset, "limit": limit},
        )

    def import_lut(self, body: LutImport) -> LutImportResult:
        """POST /lut/import (admin token); the same content again is 'unchanged', so retrying is safe."""
        return self._json(LutImportResult, "POST", "/lut/import", body=body)

    def query_lut(self, device: str, keys: list[str], runtime: str | None = None, threads: int | None = None) -> LutQueryResult:
        """POST /lut/{device}/query: which keys the table has and lacks."""
        return self._json(
            LutQueryResult, "POST", f"/lut/{device}/query", body=LutQuery(runtime=runtime, threads=threads, keys=keys)
        )

    def post_measurements(self, batch: MeasurementBatch) -> MeasurementBatchResult:
        """POST /measurements (agent token); idempotent, so retried on any transport failure."""
        return self._json(MeasurementBatchResult, "POST", "/measurements", body=batch)

    def create_job(self, job: JobCreate) -> JobCreated:
        """POST /jobs (client token)."""
        return self._json(JobCreated, "POST", "/jobs", idempotent=False, body=job)

    def get_job(self, job_id: int) -> Job:
        """GET /jobs/{id}."""
        return self._json(Job, "GET", f"/jobs/{job_id}")

    def claim_job(self, claim: JobClaim) -> JobClaimed | None:
        """POST /jobs/claim (agent token); None when no job is waiting."""
        response = self._request(
            "POST",
            "/jobs/claim",
            idempotent=False,
            ok=(200, 204),
            content=claim.model_dump_json().encode(),
            headers={"Content-Type": "application/json"},
        )
        return None if response.status_code == 204 else JobClaimed.model_validate_json(response.content)

    def heartbeat(self, job_id: int, beat: JobHeartbeat) -> Job:
        """POST /jobs/{id}/heartbeat (agent token): extend the lease."""
        return self._json(Job, "POST", f"/jobs/{job_id}/heartbeat", body=beat)

    def fail_key(self, job_id: int, fail: JobFail) -> Job:
        """POST /jobs/{id}/fail (agent token): one key could not be measured."""
        return self._json(Job, "POST", f"/jobs/{job_id}/fail", body=fail)

    def post_network_measurements(self, batch: NetworkMeasurementBatch) -> MeasurementBatchResult:
        """POST /networks/measurements (agent token); idempotent on (run_id, arch_id), so retried."""
        return self._json(MeasurementBatchResult, "POST", "/networks/measurements", body=batch)

    def get_networks(self, device: str, runtime: str | None = None, threads: int | None = None) -> NetworkTable:
        """GET /devices/{name}/networks: the latest measurement of every whole network of one table."""
        return self._json(NetworkTable, "GET", f"/devices/{device}/networks", params=self._table_params(runtime, threads))

    def get_calibration(self, device: str, runtime: str | None = None, threads: int | None = None) -> CalibrationDetail:
        """GET /lut/{device}/calibration: the calibration in force with the networks it was checked on."""
        params = {k: v for k, v in (("runtime", runtime), ("threads", threads)) if v is not None}
        return self._json(CalibrationDetail, "GET", f"/lut/{device}/calibration", params=params)

    def put_calibration(self, device: str, calibration: Calibration) -> LutCalibration:
        """PUT /lut/{device}/calibration (client token): the correction GET /lut serves with the table."""
        return self._json(LutCalibration, "PUT", f"/lut/{device}/calibration", body=calibration)
