"""Talking to one cluster's Kubernetes API with the official client.

Every call builds its `ApiClient` from the cluster's stored credentials (never the process's
global kubeconfig, and never by letting the library load a stored kubeconfig: see
`deployments.kubeconfig`), always for the cluster's `api_url`, and connects through the
outbound policy (`portal.outbound`). urllib3's own retries are off and this module retries
instead, with a backoff, on 5xx, 429 and transport errors (timeouts, refused connections): so
the number of attempts and the wait between them are ours to set and to test.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import urllib3
from django.conf import settings
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from deployments import kubeconfig
from deployments.models import Cluster, CredentialKind
from portal import outbound, stored_secrets, tracing

KSERVE_GROUP = "serving.kserve.io"
KSERVE_VERSION = "v1beta1"
ISVC_PLURAL = "inferenceservices"
ISVC_CRD = f"{ISVC_PLURAL}.{KSERVE_GROUP}"


class KubeError(Exception):
    """The cluster answered with an error, or not at all. `message` is for people."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status


class ClusterUnreachable(KubeError):
    """Transport errors, timeouts or 5xx after every attempt."""


class CredentialsUnreadable(KubeError):
    """The cluster's stored credentials can't be decrypted: nothing was sent to it."""


class CredentialsUnusable(KubeError):
    """The stored credentials can't be used (a kubeconfig the portal no longer accepts, a CA
    that can't be read): nothing was sent. Replace them on the cluster's page."""


class AddressRefused(KubeError):
    """The outbound policy refuses the API server's address: nothing was sent."""


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, ApiException):
        return exc.status is None or exc.status >= 500 or exc.status == 429
    return isinstance(exc, urllib3.exceptions.HTTPError | OSError)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        try:
            detail = json.loads(exc.body or "{}").get("message", "")
        except (ValueError, AttributeError):
            detail = ""
        return f"HTTP {exc.status} {exc.reason or ''}".strip() + (f": {detail}" if detail else "")
    if isinstance(exc, urllib3.exceptions.NewConnectionError | ConnectionError):
        return "connection refused or host unreachable"
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return "no answer within the timeout"
    return exc.__class__.__name__


def _credentials(cluster: Cluster) -> kubeconfig.Credentials:
    """The cluster's vetted credentials; its CA bundle unless a kubeconfig brings its own CA.
    A kubeconfig stored before the allow-list existed is refused here, before any use."""
    try:
        secret = stored_secrets.reveal(cluster, "credentials_encrypted")
    except stored_secrets.SecretUnreadable as exc:
        raise CredentialsUnreadable(exc.message) from None
    if cluster.credential_kind == CredentialKind.KUBECONFIG:
        try:
            credentials = kubeconfig.parse(secret)
        except kubeconfig.KubeconfigRefused as exc:
            raise CredentialsUnusable(
                f"The stored kubeconfig can't be used: {exc.message} Nothing was sent to the "
                "cluster; replace it with a token or a kubeconfig with inline credentials."
            ) from None
    else:
        credentials = kubeconfig.Credentials(token=secret)
    if not credentials.certificate_authority and cluster.ca_bundle.strip():
        credentials = dataclasses.replace(credentials, certificate_authority=cluster.ca_bundle)
    return credentials


def _configuration(cluster: Cluster, credentials: kubeconfig.Credentials
                   ) -> client.Configuration:
    configuration = client.Configuration(host=cluster.api_url.rstrip("/"))
    if credentials.token:
        configuration.api_key = {"BearerToken": credentials.token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
    configuration.retries = False
    return configuration


def _pool_manager(cluster: Cluster, credentials: kubeconfig.Credentials
                  ) -> urllib3.PoolManager:
    """Connections to the API server: vetted by the outbound policy, TLS from the stored CA and
    client certificate (never from files a kubeconfig names), no proxy."""
    tls = {}
    if cluster.api_url.startswith("https:"):
        try:
            tls["ssl_context"] = credentials.ssl_context()
        except kubeconfig.KubeconfigRefused as exc:
            raise CredentialsUnusable(f"The stored credentials can't be used: {exc.message} "
                                      "Replace them on the cluster's page.") from None
    return outbound.pool_manager(outbound.msp_policy(), retries=False, **tls)


class KubeSession:
    """One ApiClient for a cluster, with `call` (typed APIs) and `request` (raw objects)."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        credentials = _credentials(cluster)
        pool_manager = _pool_manager(cluster, credentials)
        self.api_client = client.ApiClient(_configuration(cluster, credentials))
        # The client's own pool manager would follow proxy settings and resolve the host
        # itself: every request goes through the vetted one instead.
        self.api_client.rest_client.pool_manager.clear()
        self.api_client.rest_client.pool_manager = pool_manager
        self.custom = client.CustomObjectsApi(self.api_client)

    def call(self, method: Callable, *args, **kwargs) -> Any:
        """Call a typed API method with our timeout, retrying transient failures (in one
        client span when tracing is on)."""
        name = kwargs.pop("_span_name", None) or getattr(method, "__name__", "call")
        with tracing.span(f"kubernetes {name}", kind="client", attributes={
                "portal.cluster": self.cluster.name, "server.address": self.cluster.api_url}):
            return self._call(method, *args, **kwargs)

    def _call(self, method: Callable, *args, **kwargs) -> Any:
        kwargs.setdefault("_request_timeout", settings.KUBE_REQUEST_TIMEOUT_SECONDS)
        attempts = settings.KUBE_API_ATTEMPTS
        delay = settings.KUBE_RETRY_BACKOFF_MS / 1000
        for attempt in range(1, attempts + 1):
            try:
                return method(*args, **kwargs)
            except outbound.OutboundRefused as exc:
                raise AddressRefused(f"{self.cluster.api_url}: {exc.message}") from None
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                if not _retryable(exc):
                    raise KubeError(_describe(exc), status=exc.status) from exc
                if attempt == attempts:
                    raise ClusterUnreachable(
                        f"{self.cluster.name} ({self.cluster.api_url}): {_describe(exc)} "
                        f"after {attempts} attempts.",
                        status=getattr(exc, "status", None)) from exc
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, body: dict | list | None = None, *,
                content_type: str = "application/json") -> dict:
        """A raw JSON request for objects without a typed model we want (any core group)."""

        def send(_request_timeout=None):
            serialized = self.api_client.param_serialize(
                method=method, resource_path=path,
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body, auth_settings=["BearerToken"])
            response = self.api_client.call_api(*serialized, _request_timeout=_request_timeout)
            response.read()
            return self.api_client.response_deserialize(
                response, {"2XX": "object"}).data

        return self.call(send, _span_name=method)

    def close(self) -> None:
        self.api_client.close()


@contextmanager
def session(cluster: Cluster) -> Iterator[KubeSession]:
    kube = KubeSession(cluster)
    try:
        yield kube
    finally:
        kube.close()


def not_found(exc: KubeError) -> bool:
    return exc.status == 404


def conflict(exc: KubeError) -> bool:
    return exc.status == 409
