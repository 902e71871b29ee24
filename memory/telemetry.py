"""OpenTelemetry traces: off by default, free when off, on through the standard ``OTEL_*``
variables.

**Off.** Unless ``OTEL_TRACES_EXPORTER`` names an exporter (``console`` or ``otlp``; ``none``
or unset: off; ``OTEL_SDK_DISABLED=true`` turns it off whatever it says), :func:`span` returns
one shared :class:`contextlib.nullcontext` and nothing else happens: the OpenTelemetry packages
are not even imported. The variables are read once per process, at the first span.

**Not installed.** The memory layer does not require OpenTelemetry: when an exporter is named
but the ``otel`` extra is not installed, tracing stays off with one warning.

**On.** The first span of a process builds a tracer provider (the ``otel`` extra:
``opentelemetry-sdk`` and the OTLP/HTTP exporter) with the exporters named: ``console``
prints each span to standard error as it ends; ``otlp`` batches them to
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) over HTTP/protobuf,
with the SDK's ``OTEL_BSP_*`` batch settings. The resource is ``service.name`` ``agentmem``
(``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` override it), ``service.instance.id``
(the process's role: ``orchestrator``, ``research-1``, ...; :func:`name_process`) and
``process.pid``. A process forked after its parent built a provider builds its own (a batch
exporter's thread does not survive ``fork``). :func:`shutdown` flushes what is buffered: a
process that ends with ``os._exit`` calls it first; others get it at exit.

**One trace per run.** A span can be the child of a span in another process: ``parent`` takes
a W3C ``traceparent`` string. Events carry the ``traceparent`` of the span that made them
(:attr:`memory.AgentEvent.traceparent`, a field of the stream entry), so an agent's handler
span is a child of the span that published its handoff; and the orchestrator hands its run
span to the agents it starts in the ``TRACEPARENT`` variable of their environment, so what an
agent does outside a handler (reading its group, acknowledging) is in the run's trace too.

Span names and attributes are listed in docs/integrations.md. Memory operations follow the
database conventions (``db.system.name``, ``db.operation.name``, ``db.namespace``); LLM calls
and agent handlers follow the GenAI ones (``gen_ai.operation.name`` ``chat`` /
``invoke_agent``, ``gen_ai.request.model``, ``gen_ai.usage.input_tokens`` /
``output_tokens``, ``gen_ai.agent.name`` / ``gen_ai.agent.id``).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import re
import sys
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

logger = logging.getLogger(__name__)

Attributes = Mapping[str, str | int | float | bool]

TRACEPARENT_ENV = "TRACEPARENT"  # a process's parent span, set by whoever started it
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
_OFF: AbstractContextManager[Any] = contextlib.nullcontext()
_KINDS = ("internal", "producer", "consumer", "client")

_state: dict[str, Any] = {"enabled": None, "pid": None, "tracer": None, "provider": None}
_process_name = "agentmem"


def enabled() -> bool:
    """Whether this process records spans (read from the environment once)."""
    on = _state["enabled"]
    if on is None:
        on = _state["enabled"] = _wanted()
    return bool(on)


def _wanted() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    names = _exporters()
    if not names or names == ["none"]:
        return False
    if not _installed("opentelemetry.sdk"):
        logger.warning(
            "OTEL_TRACES_EXPORTER is set but OpenTelemetry is not installed; tracing stays off "
            "(pip install 'agentmem[otel]')"
        )
        return False
    return True


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def _exporters() -> list[str]:
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "")
    return [n.strip().lower() for n in raw.split(",") if n.strip()]


def name_process(name: str) -> None:
    """Name this process in its spans' resource (``service.instance.id``); call before the
    first span."""
    global _process_name  # noqa: PLW0603 - one name per process
    _process_name = name


def span(
    name: str,
    attributes: Attributes | None = None,
    *,
    kind: str = "internal",
    parent: str | None = None,
) -> AbstractContextManager[Any]:
    """A span around the block (the current span's child, or ``parent``'s: a traceparent
    string); when tracing is off, a shared no-op. The block gets the span (None when off),
    for :func:`set_attributes`."""
    if not enabled():
        return _OFF
    return _start(name, attributes, kind, parent)


def operation(
    name: str,
    system: str,
    namespace: str,
    *,
    kind: str = "client",
    parent: str | None = None,
    **parts: str | int,
) -> AbstractContextManager[Any]:
    """A memory operation's span: ``db.system.name`` (``redis``, ``postgresql``),
    ``db.operation.name`` (``name``), ``db.namespace`` (the memory's namespace) and
    ``agentmem.<part>`` for what it is on (a category, a key, a stream...)."""
    if not enabled():
        return _OFF
    attributes: dict[str, str | int] = {"db.system.name": system, "db.operation.name": name}
    if namespace:
        attributes["db.namespace"] = namespace
    attributes.update({f"agentmem.{part}": value for part, value in parts.items()})
    return _start(name, attributes, kind, parent)


def set_attributes(current: Any, attributes: Mapping[str, Any]) -> None:
    """Add ``attributes`` (those that are not None) to a span :func:`span` gave (None: off)."""
    if current is not None:
        current.set_attributes({k: v for k, v in attributes.items() if v is not None})


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or None (tracing off, or no span)."""
    if not enabled():
        return None
    from opentelemetry import trace  # imported only when tracing is on

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def valid_traceparent(value: object) -> str | None:
    """``value`` if it is a W3C traceparent (version 00 form), else None."""
    if isinstance(value, str) and _TRACEPARENT.match(value) and not value.startswith("ff"):
        return value
    return None


def shutdown() -> None:
    """Export what is buffered and stop (for a process about to ``os._exit``)."""
    provider = _state["provider"]
    if provider is not None and _state["pid"] == os.getpid():
        _state["provider"] = _state["tracer"] = None
        provider.shutdown()


def _start(
    name: str, attributes: Attributes | None, kind: str, parent: str | None
) -> AbstractContextManager[Any]:
    from opentelemetry import trace  # imported only when tracing is on
    from opentelemetry.trace.propagation.tracecontext import (
        TraceContextTextMapPropagator,
    )

    tracer = _tracer()
    context = None
    if valid_traceparent(parent) is not None:
        context = TraceContextTextMapPropagator().extract({"traceparent": parent})
    span_kind = getattr(trace.SpanKind, kind.upper() if kind in _KINDS else "INTERNAL")
    return tracer.start_as_current_span(  # type: ignore[no-any-return]
        name, context=context, kind=span_kind, attributes=dict(attributes or {})
    )


def _tracer() -> Any:
    if _state["tracer"] is None or _state["pid"] != os.getpid():
        _state["tracer"] = _build()
        _state["pid"] = os.getpid()
    return _state["tracer"]


def _build() -> Any:
    """A tracer on a new provider with the exporters ``OTEL_TRACES_EXPORTER`` names."""
    # imported only when tracing is on
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    attributes: dict[str, Any] = {
        "service.instance.id": _process_name,
        "process.pid": os.getpid(),
    }
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = "agentmem"
    provider = TracerProvider(resource=Resource.create(attributes))
    for exporter in _exporters():
        if exporter == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
        elif exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif exporter != "none":
            logger.warning("OTEL_TRACES_EXPORTER names %r; only console and otlp exist", exporter)
    _state["provider"] = provider
    atexit.register(shutdown)
    return provider.get_tracer("agentmem")


def use_provider(provider: Any) -> None:
    """Record spans with ``provider`` from now on (tests: an in-memory exporter's); None goes
    back to reading the environment at the next span."""
    _state["enabled"] = None if provider is None else True
    _state["provider"] = provider
    _state["tracer"] = None if provider is None else provider.get_tracer("agentmem")
    _state["pid"] = os.getpid()
