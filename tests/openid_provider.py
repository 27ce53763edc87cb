"""Drives the real OpenID Provider of tests/oidc (npm oidc-provider on Node) from pytest.

`OpenIdProvider` starts one provider process on a free loopback port; a test sets the
people it knows (`set_accounts`) and reads how often the portal called it (`stats`).
`sso_login` walks the whole authorization-code + PKCE flow: the Django test client plays the
browser towards the portal, `requests` plays it towards the provider and posts its login
form, and the provider's redirect back is handed to the portal's callback.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlparse

import requests

SERVER_DIR = Path(__file__).resolve().parent / "oidc"
PORTAL = "http://testserver"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OpenIdProvider:
    def __init__(self, workdir: Path, name: str, *, provider_ids: list[str],
                 api_audience: str, acr_values: list[str], service_clients: list[str]):
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / f"{name}.json"
        self.log_path = workdir / f"{name}.log"
        self.config = {
            "issuer": self.issuer,
            "port": self.port,
            "api_audience": api_audience,
            "acr_values_supported": acr_values,
            "clients": [
                {
                    "client_id": f"portal-{pid}",
                    "client_secret": f"secret-{pid}",
                    "redirect_uris": [f"{PORTAL}/accounts/oidc/{pid}/login/callback/"],
                    "post_logout_redirect_uris": [f"{PORTAL}/accounts/login/"],
                }
                for pid in provider_ids
            ] + [
                {"client_id": client, "client_secret": f"secret-{client}",
                 "grant_types": ["client_credentials"], "response_types": [],
                 "redirect_uris": []}
                for client in service_clients
            ],
            "accounts": {},
            "token_ttl": {},
        }
        self._write()
        node = shutil.which("node") or "node"
        self.process = subprocess.Popen(
            [node, str(SERVER_DIR / "server.mjs"), str(self.config_path)],
            stdout=self.log_path.open("w"), stderr=subprocess.STDOUT,
        )
        self._wait_until_up()

    def _write(self) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.config))
        tmp.replace(self.config_path)

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"OpenID Provider exited: {self.log_path.read_text()}")
            try:
                requests.get(f"{self.issuer}/_test/stats", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("OpenID Provider did not start in 20 s")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def set_accounts(self, accounts: dict[str, dict]) -> None:
        """login → {"acr": …, "amr": […], "claims": {…}}, read by the provider on every use."""
        self.config["accounts"] = accounts
        self._write()

    def set_token_ttl(self, client_id: str, seconds: int) -> None:
        self.config["token_ttl"][client_id] = seconds
        self._write()

    def stats(self) -> dict[str, int]:
        return requests.get(f"{self.issuer}/_test/stats", timeout=5).json()

    def client_credentials_token(self, client_id: str, resource: str | None = None) -> str:
        data = {"grant_type": "client_credentials"}
        if resource:
            data["resource"] = resource
        response = requests.post(f"{self.issuer}/token", data=data, timeout=5,
                                 auth=(client_id, f"secret-{client_id}"))
        response.raise_for_status()
        return response.json()["access_token"]


@dataclass
class LoginResult:
    response: object  # the portal's answer to the callback
    authorize_url: str
    callback_url: str


def sso_login(client, provider_id: str, login: str, *, acr: str = "",
              start_url: str | None = None) -> LoginResult:
    """Sign in through the portal's button for `provider_id` as `login` (a fresh browser
    session at the provider, so it always shows its login form)."""
    start = client.post(start_url or f"/accounts/oidc/{provider_id}/login/")
    assert start.status_code == 302, start.content.decode()[:500]
    authorize_url = start["Location"]
    browser = requests.Session()
    url = authorize_url
    for _ in range(10):
        answer = browser.get(url, allow_redirects=False, timeout=10)
        if answer.status_code == 200 and "/interaction/" in url:
            answer = browser.post(url, data={"login": login, "acr": acr},
                                  allow_redirects=False, timeout=10)
        assert answer.status_code in (302, 303), answer.text[:500]
        url = urljoin(url, answer.headers["Location"])
        if url.startswith(PORTAL):
            break
    else:
        raise AssertionError("the provider never redirected back to the portal")
    parsed = urlparse(url)
    callback = f"{parsed.path}?{parsed.query}"
    return LoginResult(response=client.get(callback), authorize_url=authorize_url,
                       callback_url=callback)
