"""ASGI entry point. `/v1/*` goes to the gateway's lean ASGI app (gateway.app), everything
else to Django. The gateway owns the lifespan: it opens its Redis connection and HTTP client
pool per worker at start-up and flushes usage at shutdown. Tracing (when configured) and the
metrics port (METRICS_PORT) start with each worker process."""

import os
import warnings

from django.core.asgi import get_asgi_application

# WhiteNoise answers static files with a FileResponse, which Django serves under ASGI by
# reading the (small, browser-cached) file first and warning each time. The portal's own
# downloads (exports, reports) stream through async iterators (portal.streaming), so the
# warning would only ever be about static files here.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous "
                                          "iterators")

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
django_application = get_asgi_application()

from django.conf import settings  # noqa: E402

from gateway.app import GatewayApp  # noqa: E402  (needs Django set up first)
from portal import metrics, tracing  # noqa: E402

tracing.configure()
if settings.METRICS_PORT:
    # In each worker process of the server (SO_REUSEPORT): whichever is asked answers.
    metrics.start_server(metrics.asgi_registry())
gateway = GatewayApp()


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"].startswith("/v1/"):
        await gateway(scope, receive, send)
    elif scope["type"] == "lifespan":
        await gateway.lifespan(scope, receive, send)
    else:
        await django_application(scope, receive, send)
