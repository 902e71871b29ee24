"""``agentmem serve``: a local web view of the runs (Starlette, server-rendered HTML).

Routes: ``/`` and ``/runs`` the runs list (``?state=running|completed|failed`` keeps those),
``/runs/list`` its table alone (what the list's live refresh fetches); ``/runs/<id>`` a run's
page; ``/runs/<id>/report`` its report, rendered; ``/runs/<id>/body`` the part of it
that live updates fetch again; ``/runs/<id>/stream`` the run's events as server-sent events;
``POST /runs/<id>/dead-letters/<dl>/requeue`` (with ``confirm=yes``) hands a dead letter to the
agents again; ``/mcp`` is the MCP endpoint (streamable HTTP, :mod:`agentmem_mcp`) when the
caller mounts it (``agentmem serve`` does when the ``mcp`` extra is installed: the MCP server
sits above the web view, whose door it uses, so the view never imports it); with the
service's settings, ``/api/runs`` (:mod:`web.api`). It answers only requests that name it as
their host, and refuses a POST from another origin or without its token (:mod:`web.guard`).
With ``auth``, every route needs a tenant's key and shows only that tenant's runs
(:mod:`web.door`, :mod:`web.tenancy`): a run of another tenant is answered as a run that does
not exist.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, aclosing, asynccontextmanager
from typing import Protocol
from urllib.parse import parse_qs, quote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from agentmem.agents import Settings
from agentmem.memory import (
    EventStore,
    InvalidIdError,
    Memory,
    MemoryConfig,
    RunEntry,
    open_memory,
    validate_id,
)
from agentmem.memory.tenants import TenantKeys
from agentmem.protocol import RUN_STREAM, EventType
from agentmem.web.api import api_routes
from agentmem.web.data import load_run
from agentmem.web.door import Door, DoorSettings, principal
from agentmem.web.guard import HostGuard, new_token, token_ok
from agentmem.web.pages import (
    RUN_STATES,
    RunFilter,
    not_found,
    report_page,
    run_body,
    run_page,
    runs_page,
    runs_table,
)
from agentmem.web.tenancy import audited, visible


class Mounted(Protocol):
    """Routes served beside the view's, and what must run while the app serves them (the MCP
    endpoint, :class:`agentmem_mcp.HttpEndpoint`)."""

    routes: list[BaseRoute]

    def run(self) -> AbstractAsyncContextManager[None]: ...


_ENTRY_ID = re.compile(r"^\d+-\d+$")


def create_app(
    config: MemoryConfig,
    settings: Settings | None = None,
    *,
    auth: bool = False,
    hosts: frozenset[str] = frozenset(),
    mount: Callable[[Callable[[], Memory]], Mounted] | None = None,
) -> Starlette:
    """The web view over the stores ``config`` points at.

    The app opens the memory layer once at startup (one Redis client, one PostgreSQL pool, and
    the read replica's pool when one is configured) and closes it at shutdown; each request
    reads one run's namespace through :meth:`~memory.Memory.scope` on those connections. A
    live stream the browser leaves is cancelled while it waits and holds nothing of its own.
    With ``settings``, the service's API is served too (:mod:`web.api`). With ``auth``, every
    request needs a tenant's key; ``hosts`` are host names to answer besides the address the
    connection reached (:class:`~web.guard.HostGuard`). ``mount`` builds more routes over the
    app's memory (``agentmem serve``: the MCP endpoint).
    """
    opened: list[Memory] = []
    token = new_token()  # what a POST must carry: in this server's pages only
    mounted = None if mount is None else mount(lambda: opened[0])

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            # MCP clients write documents, and keys are checked: the schema must be there.
            memory = open_memory(config, "web")
            opened.append(await stack.enter_async_context(memory))
            if mounted is not None:
                await stack.enter_async_context(mounted.run())
            yield

    async def runs(request: Request) -> Response:
        return await _runs(opened[0], request)

    async def mine(request: Request) -> str | None:
        """The request's run id if it is valid and the request's tenant may see it."""
        run_id = _run_id(request)
        if run_id is None or not await visible(opened[0], principal(request), run_id):
            return None
        return run_id

    async def report(request: Request) -> Response:
        run_id = await mine(request)
        if run_id is None:
            return HTMLResponse(not_found(request.path_params["run_id"]), status_code=404)
        view = await load_run(opened[0].scope(run_id), run_id)
        if view.report is None:
            return Response(f"run {run_id} has no report readable here", status_code=404)
        return HTMLResponse(report_page(view))

    async def run(request: Request) -> Response:
        run_id = await mine(request)
        if run_id is None:
            return HTMLResponse(not_found(request.path_params["run_id"]), status_code=404)
        view = await load_run(opened[0].scope(run_id), run_id)
        if not view.known:
            return HTMLResponse(not_found(run_id), status_code=404)
        return HTMLResponse(run_page(view, token))

    async def body(request: Request) -> Response:
        run_id = await mine(request)
        if run_id is None:
            return Response("unknown run", status_code=404)
        view = await load_run(opened[0].scope(run_id), run_id)
        return HTMLResponse(run_body(view, token))

    async def stream(request: Request) -> Response:
        run_id = await mine(request)
        after = request.query_params.get("after", "0-0")
        if run_id is None:
            return Response("unknown run", status_code=404)
        if not _ENTRY_ID.match(after):
            return Response("bad event id", status_code=400)
        return StreamingResponse(
            _events(opened[0].scope(run_id).events(RUN_STREAM), after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    async def requeue(request: Request) -> Response:
        run_id = await mine(request)
        letter = request.path_params["letter"]
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        if run_id is None:  # another tenant's run too: answered before anything else
            return Response("unknown run", status_code=404)
        if not token_ok(token, request.headers, form):
            return Response("refused: the request carries no valid token", status_code=403)
        if not _ENTRY_ID.match(letter):
            return Response("bad dead letter id", status_code=400)
        if form.get("confirm") != ["yes"]:
            return Response("not confirmed: send confirm=yes", status_code=400)
        log = opened[0].scope(run_id).events(RUN_STREAM)
        if letter not in {d.dead_letter_id for d in await log.dead_letters(1000)}:
            return Response(f"run {run_id} has no dead letter {letter}", status_code=404)
        await log.requeue(letter)
        await audited(opened[0], principal(request), "requeue", run_id)
        return RedirectResponse(f"/runs/{quote(run_id, safe='')}", status_code=303)

    door = _door(settings, (lambda: TenantKeys(opened[0].db.pool)) if auth else None)
    return Starlette(
        lifespan=lifespan,
        middleware=[Middleware(HostGuard, hosts=hosts), Middleware(Door, settings=door)],
        routes=[
            Route("/", runs),
            Route("/runs", runs),
            Route("/runs/list", runs),
            Route("/runs/{run_id}", run),
            Route("/runs/{run_id}/report", report),
            Route("/runs/{run_id}/body", body),
            Route("/runs/{run_id}/stream", stream),
            Route("/runs/{run_id}/dead-letters/{letter}/requeue", requeue, methods=["POST"]),
            *(mounted.routes if mounted is not None else []),
            *([] if settings is None else api_routes(lambda: opened[0], settings)),
        ],
    )


async def _runs(memory: Memory, request: Request) -> Response:
    """The run list (``/runs/list``: the table alone, refetched by the page), of the request's
    tenant, filtered by ``?state=`` and, for a server without keys, ``?tenant=``."""
    state = request.query_params.get("state") or None
    if state is not None and state not in RUN_STATES:
        return Response(f"state must be one of {', '.join(RUN_STATES)}", status_code=400)
    asked = request.query_params.get("tenant") or None
    who = principal(request)
    if who is not None and asked not in {None, who.tenant}:
        entries: list[RunEntry] = []  # another tenant's runs: as if there were none
    else:
        entries = await memory.runs.newest(200, tenant=who.tenant if who else asked)
    shown = RunFilter(state, asked)
    if request.url.path == "/runs/list":
        return HTMLResponse(runs_table(entries, shown))
    return HTMLResponse(runs_page(entries, shown))


def _door(settings: Settings | None, keys: Callable[[], TenantKeys] | None) -> DoorSettings:
    """What the door checks: tenants' keys (None: no authentication) and their limits."""
    limits = settings or Settings.model_construct()
    return DoorSettings(
        keys=keys,
        requests_per_second=limits.tenant_requests_per_second,
        request_burst=limits.tenant_request_burst,
        max_request_bytes=limits.max_request_bytes,
    )


def _run_id(request: Request) -> str | None:
    try:
        return validate_id(request.path_params["run_id"], "run id")
    except InvalidIdError:
        return None


async def _events(log: EventStore, after: str) -> AsyncIterator[str]:
    """The run's events after ``after``, one server-sent event each, until the run completes."""
    async with aclosing(log.subscribe(after)) as events:
        async for event in events:
            yield f"id: {event.event_id}\ndata: {event.event_type} by {event.agent_id}\n\n"
            if event.event_type == EventType.RUN_COMPLETED:
                yield "event: done\ndata: done\n\n"
                return
