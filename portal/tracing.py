"""OpenTelemetry traces, optional: on when OTEL_EXPORTER_OTLP_ENDPOINT names a collector.

Off (the default) nothing is set up and nothing is sent anywhere: every helper here returns
at once (`ENABLED` is False), so the gateway's hot path pays one attribute check. On, each
process exports its spans in batches, from a background thread, over OTLP/HTTP to
`<endpoint>/v1/traces` (the SDK's standard OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT,
_CERTIFICATE … apply), and these spans connect into one trace through W3C `traceparent`:

- web: a server span per request (`RequestContextMiddleware`), continuing a caller's trace;
- Celery: the enqueuing span's context travels in the task message's headers
  (`portal.celery`); the worker runs the task in a consumer span under it;
- Kubernetes API calls (`deployments.kube`) and OCI registry calls (`models_catalog.registry`)
  are client spans inside whatever caused them;
- gateway: a server span per /v1 request and a client span per model-server call, whose
  `traceparent` header lets a traced model server (vLLM) continue the trace.

Span names and attributes carry methods, routes, statuses, model and tenant slugs — never
prompts, answers, keys or tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from django.conf import settings

ENABLED = False
_tracer = None
_provider = None
_propagator = None


def configure(span_processor=None) -> None:
    """Set tracing up in this process (each process once: Celery's pool processes after they
    fork). `span_processor` replaces the OTLP exporter (tests)."""
    global ENABLED, _tracer, _provider, _propagator
    if ENABLED or not (settings.OTEL_EXPORTER_OTLP_ENDPOINT or span_processor):
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if span_processor is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        span_processor = BatchSpanProcessor(OTLPSpanExporter(
            endpoint=settings.OTEL_EXPORTER_OTLP_ENDPOINT.rstrip("/") + "/v1/traces"))
    _provider = TracerProvider(resource=Resource.create({
        "service.name": settings.OTEL_SERVICE_NAME,
        "service.namespace": "sovereign-portal"}))
    _provider.add_span_processor(span_processor)
    _tracer = _provider.get_tracer("sovereign-portal")
    _propagator = TraceContextTextMapPropagator()
    ENABLED = True


def shutdown() -> None:
    """Send what is buffered (a process that exits)."""
    if _provider is not None:
        _provider.shutdown()


def extract(carrier: Mapping[str, str]):
    """The trace context a caller sent (`traceparent`), or None."""
    if not ENABLED:
        return None
    return _propagator.extract(carrier)


def inject(carrier: MutableMapping[str, str]) -> None:
    """Put the current span's context into outgoing headers."""
    if ENABLED:
        _propagator.inject(carrier)


@contextmanager
def span(name: str, *, kind: str = "internal", parent=None,
         attributes: dict[str, Any] | None = None) -> Iterator[Any]:
    """A span around the block (None when tracing is off); an exception marks it failed."""
    if not ENABLED:
        yield None
        return
    from opentelemetry.trace import SpanKind

    with _tracer.start_as_current_span(name, context=parent, kind=getattr(SpanKind, kind.upper()),
                                       attributes=attributes) as current:
        yield current


def start(name: str, *, kind: str = "internal", parent=None,
          attributes: dict[str, Any] | None = None):
    """A span that outlives a block (a Celery task between its prerun and postrun signals);
    returns (span, token) for `finish`, or None when tracing is off."""
    if not ENABLED:
        return None
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    current = _tracer.start_span(name, context=parent, kind=getattr(SpanKind, kind.upper()),
                                 attributes=attributes)
    token = otel_context.attach(trace.set_span_in_context(current))
    return current, token


def finish(started, *, failed: bool = False) -> None:
    if started is None:
        return
    from opentelemetry import context as otel_context
    from opentelemetry.trace import Status, StatusCode

    current, token = started
    if failed:
        current.set_status(Status(StatusCode.ERROR))
    current.end()
    otel_context.detach(token)


def log_ids() -> dict[str, str]:
    """trace_id and span_id of the current span, for a log line."""
    if not ENABLED:
        return {}
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}
