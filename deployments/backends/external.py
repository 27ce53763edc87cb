"""An already-running OpenAI-compatible server (vLLM, llama.cpp, Ollama …): nothing to apply;
observing it is a `GET <base_url>/models` like any OpenAI client would do, through the
outbound policy (portal.outbound)."""

from __future__ import annotations

import requests

from deployments.backends import Observation
from deployments.models import Deployment
from portal import outbound, stored_secrets

HEALTH_TIMEOUT_SECONDS = 5


class EndpointBusy(Exception):
    """The endpoint took the connection but did not answer within the health check's time."""


def probe_openai_endpoint(*, base_url: str, api_key: str, expected_model: str) -> str | None:
    """None when healthy, else what is wrong; EndpointBusy when it accepted the connection
    but gave no answer in time."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with outbound.session(outbound.msp_policy()) as http:
            response = http.get(base_url.rstrip("/") + "/models", headers=headers,
                                timeout=HEALTH_TIMEOUT_SECONDS)
    except outbound.OutboundRefused as exc:
        return exc.message
    except requests.ReadTimeout as exc:
        raise EndpointBusy(f"{base_url} accepted the health check but did not answer within "
                           f"{HEALTH_TIMEOUT_SECONDS} s.") from exc
    except requests.RequestException as exc:
        return f"{base_url} is unreachable ({exc.__class__.__name__})."
    except UnicodeError:  # a key stored before keys were checked (see validate_header_token)
        return ("The stored upstream API key holds characters an HTTP header can't carry: "
                "edit the endpoint and enter the key again.")
    if response.status_code in (401, 403):
        return f"{base_url} refused the upstream API key (HTTP {response.status_code})."
    if response.status_code != 200:
        return f"{base_url}/models answered HTTP {response.status_code}."
    try:
        served = {entry["id"] for entry in response.json().get("data", [])}
    except (ValueError, AttributeError, KeyError, TypeError):
        return f"{base_url}/models did not answer with an OpenAI model list."
    if expected_model not in served:
        listed = ", ".join(sorted(served)[:5]) or "none"
        return f"{base_url} does not serve {expected_model!r} (it serves: {listed})."
    return None


class ExternalBackend:
    kind = "external endpoint"

    def manifest(self, deployment: Deployment) -> dict | None:
        return None

    def apply(self, deployment: Deployment) -> str:
        return "nothing to apply: the endpoint runs outside the portal"

    def observe(self, deployment: Deployment) -> Observation:
        try:
            api_key = stored_secrets.reveal(deployment, "upstream_api_key_encrypted")
        except stored_secrets.SecretUnreadable as exc:
            return Observation(found=True, ready=False, url=deployment.base_url,
                               problem=exc.message)
        try:
            problem = probe_openai_endpoint(base_url=deployment.base_url, api_key=api_key,
                                            expected_model=deployment.served_model_name)
        except EndpointBusy as exc:
            return Observation(found=True, ready=False, url=deployment.base_url,
                               problem=str(exc), busy=True)
        return Observation(found=True, ready=problem is None, url=deployment.base_url,
                           problem=problem or "")

    def delete(self, deployment: Deployment) -> None:
        return None


BACKEND = ExternalBackend()
