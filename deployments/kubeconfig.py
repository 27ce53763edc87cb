"""Kubeconfigs the portal accepts: inline credentials only.

A kubeconfig can make whoever loads it run a program (`exec`, `auth-provider`), read local
files (`tokenFile`, `client-certificate`, `client-key`, `certificate-authority`) or talk
through a proxy (`proxy-url`). The portal loads a cluster's kubeconfig in its workers, so it
takes the few keys it needs from an allow-list — a bearer token, client certificate and key
data, CA data — and refuses every other key by name. The kubernetes library never sees the
kubeconfig: `deployments.kube` builds the client from the `Credentials` returned here, and
always talks to the cluster's API server URL, never to the kubeconfig's `server`.
"""

from __future__ import annotations

import base64
import binascii
import ssl
import tempfile
from dataclasses import dataclass

import yaml

MAX_BYTES = 256 * 1024

# The keys accepted at each level; `server`, `name`, `namespace`, `preferences` and
# `extensions` are accepted and not used.
_ALLOWED = {
    "": {"apiVersion", "kind", "clusters", "contexts", "users", "current-context",
         "preferences", "extensions"},
    "clusters[]": {"name", "cluster"},
    "cluster": {"server", "certificate-authority-data", "extensions"},
    "users[]": {"name", "user"},
    "user": {"token", "client-certificate-data", "client-key-data"},
    "contexts[]": {"name", "context"},
    "context": {"cluster", "user", "namespace", "extensions"},
}

_RUNS = "runs a program or calls an identity provider from the portal's machine"
_READS = "names a file on the portal's machine"
_WHY = {
    "exec": f"{_RUNS}; paste a service-account token (`token`) or client certificate and key "
            "data instead",
    "auth-provider": f"{_RUNS}; paste a service-account token (`token`) instead",
    "tokenFile": f"{_READS}; paste the token itself as `token`",
    "client-certificate": f"{_READS}; paste it as `client-certificate-data`",
    "client-key": f"{_READS}; paste it as `client-key-data`",
    "certificate-authority": f"{_READS}; paste it as `certificate-authority-data`",
    "proxy-url": "sends the portal's calls through a proxy; the portal connects to the "
                 "cluster's API server URL directly",
    "insecure-skip-tls-verify": "turns off certificate checks; give the CA as "
                                "`certificate-authority-data` (or the cluster's CA bundle)",
    "username": "is basic authentication; use a service-account token instead",
    "password": "is basic authentication; use a service-account token instead",
}


class KubeconfigRefused(Exception):
    """The kubeconfig can't be used. `field` is where (e.g. `users[0].user.exec`)."""

    def __init__(self, message: str, *, field: str = ""):
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Credentials:
    """What the portal authenticates to a cluster with; PEM text for the certificates."""

    token: str = ""
    client_certificate: str = ""
    client_key: str = ""
    certificate_authority: str = ""

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS context that verifies the server against the CA (the system's CAs when
        there is none) and presents the client certificate, if any."""
        try:
            context = ssl.create_default_context(cadata=self.certificate_authority or None)
        except (ssl.SSLError, ValueError, TypeError) as exc:  # TypeError: not ASCII PEM
            raise KubeconfigRefused(f"The CA certificate can't be read ({exc}).",
                                    field="certificate-authority-data") from None
        if self.client_certificate:
            # Python's ssl loads a certificate chain from a file only: a private temporary
            # file (mode 0600), removed as soon as it is read.
            with tempfile.NamedTemporaryFile("w", suffix=".pem") as chain:
                chain.write(self.client_certificate.strip() + "\n"
                            + self.client_key.strip() + "\n")
                chain.flush()
                try:
                    context.load_cert_chain(chain.name)
                except (ssl.SSLError, ValueError) as exc:
                    raise KubeconfigRefused(
                        "The client certificate and key can't be used together "
                        f"({exc.__class__.__name__}: {exc}).",
                        field="client-certificate-data") from None
        return context


def _refuse_unknown(mapping: dict, level: str, where: str) -> None:
    for key in mapping:
        if key not in _ALLOWED[level]:
            path = f"{where}.{key}" if where else str(key)
            why = _WHY.get(key, "is not accepted: the portal takes inline credentials only "
                                "(token, client-certificate-data and client-key-data, "
                                "certificate-authority-data)")
            raise KubeconfigRefused(f"{path} {why}.", field=path)


def _entries(document: dict, section: str, inner: str) -> dict[str, tuple[str, dict]]:
    """name → (path, inner mapping) of one of the kubeconfig's named lists, keys vetted."""
    entries = document.get(section) or []
    if not isinstance(entries, list):
        raise KubeconfigRefused(f"{section} must be a list.", field=section)
    found: dict[str, tuple[str, dict]] = {}
    for index, entry in enumerate(entries):
        where = f"{section}[{index}]"
        if not isinstance(entry, dict):
            raise KubeconfigRefused(f"{where} must be a mapping.", field=where)
        _refuse_unknown(entry, f"{section}[]", where)
        body = entry.get(inner) or {}
        if not isinstance(body, dict):
            raise KubeconfigRefused(f"{where}.{inner} must be a mapping.",
                                    field=f"{where}.{inner}")
        _refuse_unknown(body, inner, f"{where}.{inner}")
        found[str(entry.get("name", ""))] = (f"{where}.{inner}", body)
    return found


def _pem(body: dict, key: str, where: str) -> str:
    value = body.get(key)
    if not value:
        return ""
    try:
        text = base64.b64decode(str(value), validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        raise KubeconfigRefused(f"{where}.{key} is not base64-encoded PEM.",
                                field=f"{where}.{key}") from None
    if "-----BEGIN " not in text:
        raise KubeconfigRefused(f"{where}.{key} does not hold a PEM block.",
                                field=f"{where}.{key}")
    return text


def parse(text: str) -> Credentials:
    """The credentials of the kubeconfig's current context (or its only one), after every key
    of the whole document passed the allow-list. Raises KubeconfigRefused."""
    if len(text.encode()) > MAX_BYTES:
        raise KubeconfigRefused(f"The kubeconfig is larger than {MAX_BYTES // 1024} KB.")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise KubeconfigRefused(f"The kubeconfig is not valid YAML{where}.") from None
    if not isinstance(document, dict):
        raise KubeconfigRefused("The kubeconfig must be a YAML mapping (kind: Config).")
    _refuse_unknown(document, "", "")
    clusters = _entries(document, "clusters", "cluster")
    users = _entries(document, "users", "user")
    contexts = _entries(document, "contexts", "context")
    name = document.get("current-context") or ""
    if not name and len(contexts) == 1:
        name = next(iter(contexts))
    if name not in contexts:
        raise KubeconfigRefused(f"The kubeconfig has no context “{name}”: set current-context "
                                "to one of its contexts." if name else
                                "The kubeconfig has no current-context.",
                                field="current-context")
    where, context = contexts[name]
    user_name = str(context.get("user", ""))
    if user_name not in users:
        raise KubeconfigRefused(f"{where}.user names a user the kubeconfig does not have.",
                                field=f"{where}.user")
    user_where, user = users[user_name]
    token = str(user.get("token") or "")
    certificate = _pem(user, "client-certificate-data", user_where)
    key = _pem(user, "client-key-data", user_where)
    if bool(certificate) != bool(key):
        raise KubeconfigRefused(f"{user_where} needs both client-certificate-data and "
                                "client-key-data.", field=f"{user_where}.client-key-data")
    if not token and not certificate:
        raise KubeconfigRefused(f"{user_where} has no credentials: give a token or "
                                "client-certificate-data and client-key-data.",
                                field=user_where)
    cluster_name = str(context.get("cluster", ""))
    if cluster_name not in clusters:
        raise KubeconfigRefused(f"{where}.cluster names a cluster the kubeconfig does not "
                                "have.", field=f"{where}.cluster")
    cluster_where, cluster = clusters[cluster_name]
    return Credentials(token=token, client_certificate=certificate, client_key=key,
                       certificate_authority=_pem(cluster, "certificate-authority-data",
                                                  cluster_where))
