"""The Celery application shared by the web process, the worker and beat.

Besides the app, the signals that make background work observable:

- a task message carries the request id, tenant and actor of whatever enqueued it (and, with
  tracing on, its trace context) in its headers; the worker runs the task with them bound,
  so the task's log lines and audit events carry the same request id as the web request;
- logging goes through the portal's handler (LOG_FORMAT), not Celery's own;
- with METRICS_PORT, the worker counts task outcomes in every pool process and its main
  process serves them (`portal.metrics`).
"""

import os
from pathlib import Path

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Message headers that carry the enqueuing request's context.
_CONTEXT_HEADERS = {"portal_request_id": "request_id", "portal_tenant": "tenant",
                    "portal_actor": "actor"}
_running: dict[str, tuple] = {}  # task id → (context token, span) between prerun and postrun


@app.on_after_configure.connect
def _prepare_embedded_broker(sender: Celery, **kwargs) -> None:
    """The filesystem broker of the quickstart needs its folders before the first message."""
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


@signals.setup_logging.connect
def _portal_logging(loglevel=None, **kwargs) -> None:
    """Celery logs through settings.LOGGING (one format for every process); `--loglevel`
    still sets the level."""
    import logging
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)


@signals.before_task_publish.connect
def _carry_context(headers=None, **kwargs) -> None:
    from portal import request_context, tracing

    if headers is None:
        return
    context = request_context.current()
    for header, field in _CONTEXT_HEADERS.items():
        value = getattr(context, field)
        if value:
            headers[header] = value
    tracing.inject(headers)


@signals.task_prerun.connect
def _bind_context(task_id=None, task=None, **kwargs) -> None:
    from portal import request_context, tracing

    message = task.request
    fields = {field: getattr(message, header, None) or "" for header, field
              in _CONTEXT_HEADERS.items()}
    token = request_context.bind(request_context.RequestContext(**fields))
    carrier = {"traceparent": getattr(message, "traceparent", None) or ""}
    span = tracing.start(f"celery {task.name}", kind="consumer",
                         parent=tracing.extract(carrier) if carrier["traceparent"] else None,
                         attributes={"messaging.system": "celery",
                                     "messaging.message.id": task_id or "",
                                     "portal.request_id": fields["request_id"]})
    _running[task_id] = (token, span)


@signals.task_postrun.connect
def _unbind_context(task_id=None, state=None, **kwargs) -> None:
    from portal import request_context, tracing

    token, span = _running.pop(task_id, (None, None))
    tracing.finish(span, failed=state == "FAILURE")
    if token is not None:
        request_context.reset(token)


def _count(task, outcome: str) -> None:
    from django.conf import settings

    if settings.PROMETHEUS_MULTIPROC_DIR:
        from portal.metrics import CELERY_TASKS

        CELERY_TASKS.labels(getattr(task, "name", str(task)), outcome).inc()


@signals.task_success.connect
def _count_success(sender=None, **kwargs) -> None:
    _count(sender, "succeeded")


@signals.task_failure.connect
def _count_failure(sender=None, **kwargs) -> None:
    _count(sender, "failed")


@signals.task_retry.connect
def _count_retry(sender=None, **kwargs) -> None:
    _count(sender, "retried")


@signals.worker_process_init.connect
def _pool_process_started(**kwargs) -> None:
    """A forked pool process starts its own span exporter (threads don't survive a fork)."""
    from portal import tracing

    tracing.configure()


@signals.worker_process_shutdown.connect
def _pool_process_exits(pid=None, **kwargs) -> None:
    from django.conf import settings

    from portal import tracing

    tracing.shutdown()
    if settings.PROMETHEUS_MULTIPROC_DIR:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid(), settings.PROMETHEUS_MULTIPROC_DIR)


@signals.worker_ready.connect
def _serve_metrics(**kwargs) -> None:
    from django.conf import settings

    from portal import tracing

    tracing.configure()  # the worker's main process (and a solo pool) traces too
    if settings.METRICS_PORT:
        from portal import metrics

        metrics.start_server(metrics.celery_registry())


@signals.worker_shutdown.connect
def _worker_exits(**kwargs) -> None:
    from portal import tracing

    tracing.shutdown()
