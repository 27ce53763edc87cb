"""Talking to one cluster's Kubernetes API with the official client.

Every call builds its `ApiClient` from the cluster's stored credentials (never the process's
global kubeconfig), turns urllib3's own retries off and retries here instead, with a backoff,
on 5xx, 429 and transport errors (timeouts, refused connections): so the number of attempts
and the wait between them are ours to set and to test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import urllib3
import yaml
from django.conf import settings
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.config.kube_config import KubeConfigLoader

from deployments.models import Cluster, CredentialKind
from portal import stored_secrets

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


def configuration_for(cluster: Cluster) -> client.Configuration:
    try:
        secret = stored_secrets.reveal(cluster, "credentials_encrypted")
    except stored_secrets.SecretUnreadable as exc:
        raise CredentialsUnreadable(exc.message) from None
    configuration = client.Configuration()
    if cluster.credential_kind == CredentialKind.KUBECONFIG and secret:
        try:
            loader = KubeConfigLoader(config_dict=yaml.safe_load(secret))
            loader.load_and_set(configuration)
        except Exception as exc:  # the loader raises plain Exceptions of many kinds
            raise KubeError(f"The stored kubeconfig can't be used ({exc}).") from exc
    else:
        configuration.host = cluster.api_url.rstrip("/")
        if secret:
            configuration.api_key = {"BearerToken": secret}
            configuration.api_key_prefix = {"BearerToken": "Bearer"}
        if cluster.ca_bundle.strip():
            configuration.ca_cert_data = cluster.ca_bundle
    configuration.retries = False
    return configuration


class KubeSession:
    """One ApiClient for a cluster, with `call` (typed APIs) and `request` (raw objects)."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.api_client = client.ApiClient(configuration_for(cluster))
        self.custom = client.CustomObjectsApi(self.api_client)

    def call(self, method: Callable, *args, **kwargs) -> Any:
        """Call a typed API method with our timeout, retrying transient failures."""
        kwargs.setdefault("_request_timeout", settings.KUBE_REQUEST_TIMEOUT_SECONDS)
        attempts = settings.KUBE_API_ATTEMPTS
        delay = settings.KUBE_RETRY_BACKOFF_MS / 1000
        for attempt in range(1, attempts + 1):
            try:
                return method(*args, **kwargs)
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

        return self.call(send)

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
