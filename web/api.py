"""The service's HTTP API on ``agentmem serve``: submit a run, read its state, scrape metrics.

- ``POST /api/runs`` with a JSON body ``{"tenant": ..., "topic": ..., "sources": [{"name":
  ..., "text": ...}], "run_id": ... (optional)}`` submits a run to the pool and answers 202
  with ``{"run_id": ..., "state": ...}`` (the same submission twice: the same run). A tenant
  whose queue is full gets 429 with ``Retry-After``; a body that does not fit gets 400, one
  whose run request would be over the event cap (``AGENTMEM_MAX_EVENT_BYTES``) 413.
- ``GET /metrics``: the service's signals in the Prometheus text format (:mod:`service.metrics`).
- ``GET /api/runs/{id}``: the run's state (``queued``, ``running``, ``completed``, ``failed``)
  and, once it ended, its report's path or the reason it failed.

**Tenants.** With authentication on (:mod:`web.door`), the tenant is the key's: a body naming
another tenant is refused (400), a ``run_id`` is the submission's idempotency key within the
tenant (:func:`web.tenancy.tenant_run_id`), ``GET /api/runs/{id}`` answers 404 for another
tenant's run as for no run, and ``/metrics`` shows the pool's shared signals and only this
tenant's series. Each submission is audited (:func:`web.tenancy.audited`).

**Cross-site requests.** The API takes no CSRF token: it answers a POST only with a JSON body
(``Content-Type: application/json``), which a page on another site cannot send without a CORS
preflight this server never grants, and a browser's cross-site request carries an ``Origin``
that :class:`web.guard.HostGuard` refuses. A tool that sends no ``Origin`` (curl, a client in
another process) is served.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agentmem.agents.settings import Settings
from agentmem.memory import AgentMemoryError, InvalidIdError, Memory, QueueFullError, validate_id
from agentmem.protocol.events import SourceDoc
from agentmem.service.metrics import Snapshot, prometheus_text, snapshot
from agentmem.service.submit import SubmissionTooLargeError, run_state, submit
from agentmem.web.door import principal
from agentmem.web.tenancy import audited, tenant_run_id, visible

MAX_BODY_BYTES = 20 * 1024 * 1024


class RunSubmission(BaseModel):
    """What ``POST /api/runs`` takes."""

    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(default="default", min_length=1, max_length=256)
    topic: str = Field(min_length=1, max_length=500)
    sources: list[SourceDoc] = Field(min_length=1, max_length=50)
    run_id: str | None = None


def api_routes(memory: Callable[[], Memory], settings: Settings) -> list[Route]:
    """The API's routes over the app's open memory (``memory()``: opened at startup)."""

    async def create(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, "send the run as JSON (Content-Type: application/json)")
        raw = await request.body()  # web.door refused a body over max_request_bytes
        if len(raw) > MAX_BODY_BYTES:
            return _error(413, f"the body is over {MAX_BODY_BYTES} bytes")
        try:
            body = RunSubmission.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as exc:
            return _error(400, f"not a run submission: {_one_line(exc)}")
        except RecursionError:  # json.loads on arrays nested a hundred thousand deep
            return _error(400, "not a run submission: JSON nested too deeply")
        who = principal(request)
        tenant, run_id = body.tenant, body.run_id
        if who is not None:
            if "tenant" in body.model_fields_set and body.tenant != who.tenant:
                return _error(400, f"this key is for tenant {who.tenant!r}; omit tenant")
            tenant = who.tenant
            run_id = None if run_id is None else tenant_run_id(tenant, run_id)
        try:
            done = await submit(
                memory(),
                settings,
                tenant=tenant,  # submit() checks the name
                topic=body.topic.strip(),
                sources=body.sources,
                run_id=run_id,
            )
            await audited(memory(), who, "submit", done.run_id)
        except SubmissionTooLargeError as exc:  # refused before anything was recorded
            return _error(413, _one_line(exc))
        except QueueFullError as exc:
            return _error(429, str(exc), {"Retry-After": f"{max(1, round(exc.retry_after))}"})
        except (InvalidIdError, ValidationError) as exc:
            return _error(400, _one_line(exc))
        except AgentMemoryError as exc:  # the servers: nothing was submitted, or it was once
            return _error(503, f"{_one_line(exc)}; submit again (the same submission is one run)")
        location = f"/api/runs/{done.run_id}"
        return JSONResponse(
            {"run_id": done.run_id, "state": done.state},
            status_code=202,
            headers={"Location": location},
        )

    async def state(request: Request) -> Response:
        try:
            run_id = validate_id(request.path_params["run_id"], "run id")
            mine = await visible(memory(), principal(request), run_id)
            status = await run_state(memory(), run_id)
        except InvalidIdError as exc:
            return _error(400, str(exc))
        except AgentMemoryError as exc:
            return _error(503, str(exc))
        if status.state == "unknown" or not mine:
            return _error(404, f"no run {run_id}")
        return JSONResponse(
            {
                "run_id": status.run_id,
                "state": status.state,
                "tenant": status.tenant,
                "error": status.error,
                "report_path": status.report_path,
                "sections": status.sections,
                "approved": status.approved,
            }
        )

    async def metrics(request: Request) -> Response:
        try:
            snap = await snapshot(memory(), settings)
            who = principal(request)
            if who is not None:
                snap = only_tenant(snap, who.tenant)
            text = prometheus_text(snap)
        except AgentMemoryError as exc:
            return Response(f"# cannot read the signals: {exc}\n", status_code=503)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/metrics", metrics),
        Route("/api/runs", create, methods=["POST"]),
        Route("/api/runs/{run_id}", state),
    ]


def only_tenant(snap: Snapshot, tenant: str) -> Snapshot:
    """The snapshot without other tenants' series (the pool's shared signals stay)."""
    runs = Counter({key: n for key, n in snap.runs.items() if key[1] == tenant})
    tenants = {t: counts for t, counts in snap.tenants.items() if t == tenant}
    return replace(snap, tenants=tenants, runs=runs)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"error": message}
    return JSONResponse(body, status_code=status, headers=headers)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:500]
