"""Kubeconfigs carry inline credentials only (deployments/kubeconfig.py): every shape that
runs a program, reads a local file or goes through a proxy is refused — through the page and
the API, naming the field — and one stored before that rule is refused when used, without
running or reading anything. The portal always talks to the cluster's own API server URL."""

import base64
import ipaddress

import pytest
import yaml

from deployments import services
from deployments.models import Cluster
from portal import crypto
from tests.support.net import recording_server
from tests.support.tls import make_pki, tls_server


def kubeconfig(*, server="https://k8s.example.test", user=None, cluster=None,
               top=None) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "portal",
        "clusters": [{"name": "c", "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": "u", "user": user if user is not None else {"token": "t0ken"}}],
        "contexts": [{"name": "portal", "context": {"cluster": "c", "user": "u"}}],
        **(top or {})})


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
EXEC = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "/bin/true"}}

# (what is refused, the kubeconfig, the field the refusal names)
REFUSED = [
    ("exec", kubeconfig(user=EXEC), "users[0].user.exec"),
    ("auth-provider", kubeconfig(user={"auth-provider": {"name": "oidc", "config": {}}}),
     "users[0].user.auth-provider"),
    ("tokenFile", kubeconfig(user={"tokenFile": "/etc/hostname"}), "users[0].user.tokenFile"),
    ("client-certificate", kubeconfig(user={"client-certificate": "/etc/ssl/c.pem",
                                            "client-key-data": _b64("k")}),
     "users[0].user.client-certificate"),
    ("client-key", kubeconfig(user={"client-certificate-data": _b64("c"),
                                    "client-key": "/etc/ssl/k.pem"}),
     "users[0].user.client-key"),
    ("certificate-authority", kubeconfig(cluster={"certificate-authority": "/etc/ssl/ca.pem"}),
     "clusters[0].cluster.certificate-authority"),
    ("proxy-url", kubeconfig(cluster={"proxy-url": "http://10.0.0.1:3128"}),
     "clusters[0].cluster.proxy-url"),
    ("insecure-skip-tls-verify", kubeconfig(cluster={"insecure-skip-tls-verify": True}),
     "clusters[0].cluster.insecure-skip-tls-verify"),
    ("impersonation", kubeconfig(user={"token": "t", "as": "system:admin"}),
     "users[0].user.as"),
    ("basic auth", kubeconfig(user={"username": "admin", "password": "pw"}),
     "users[0].user.password"),
    ("unknown top-level key", kubeconfig(top={"exec": "x"}), "exec"),
    ("exec on an unused user", yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "portal",
        "clusters": [{"name": "c", "cluster": {"server": "https://k"}}],
        "users": [{"name": "u", "user": {"token": "t"}}, {"name": "other", "user": EXEC}],
        "contexts": [{"name": "portal", "context": {"cluster": "c", "user": "u"}}]}),
     "users[1].user.exec"),
]


def _form(**overrides):
    data = {"name": "kc-1", "api_url": "https://k8s.example.test", "jurisdiction": "DE",
            "credential_kind": "kubeconfig", "credentials": "", "ca_bundle": "",
            "gateway_namespace": "istio-system", "default_mode": "Standard", "capacity": ""}
    data.update(overrides)
    return data


@pytest.mark.parametrize("shape,config,field", REFUSED, ids=[r[0] for r in REFUSED])
def test_the_api_refuses_the_shape_with_a_400_naming_the_field(client, msp_admin, shape,
                                                               config, field):
    client.force_login(msp_admin)
    created = client.post("/api/clusters/", {
        "name": "kc-1", "api_url": "https://k8s.example.test", "jurisdiction": "DE",
        "credential_kind": "kubeconfig", "credentials": config},
        content_type="application/json")
    assert created.status_code == 400, created.content
    assert field in " ".join(created.json()["errors"]["credentials"])
    assert not Cluster.objects.exists()


@pytest.mark.parametrize("shape,config,field", REFUSED, ids=[r[0] for r in REFUSED])
def test_the_page_refuses_the_shape_with_a_form_error_naming_the_field(client, msp_admin,
                                                                       shape, config, field):
    client.force_login(msp_admin)
    page = client.post("/msp/clusters/new/", _form(credentials=config))
    assert page.status_code == 200
    errors = page.context["form"].errors["credentials"]
    assert any(field in error for error in errors), errors
    assert not Cluster.objects.exists()


def test_replacing_credentials_is_refused_the_same_way(client, msp_admin, cluster):
    client.force_login(msp_admin)
    patched = client.patch(f"/api/clusters/{cluster.pk}/", {
        "credential_kind": "kubeconfig", "credentials": kubeconfig(user=EXEC)},
        content_type="application/json")
    assert patched.status_code == 400
    assert "users[0].user.exec" in str(patched.json()["errors"]["credentials"])
    page = client.post(f"/msp/clusters/{cluster.pk}/edit/", _form(
        name=cluster.name, api_url=cluster.api_url,
        credentials=kubeconfig(cluster={"proxy-url": "http://p"})))
    assert "clusters[0].cluster.proxy-url" in str(page.context["form"].errors["credentials"])
    cluster.refresh_from_db()
    assert cluster.credential_kind == "token"


def test_other_broken_kubeconfigs_are_refused_with_a_reason(msp_admin):
    from django.core.exceptions import ValidationError

    for config, message in [
        ("not: [a kubeconfig", "not valid YAML"),
        ("- a list", "YAML mapping"),
        (kubeconfig(user={}), "has no credentials"),
        (kubeconfig(user={"client-certificate-data": _b64("x")}), "does not hold a PEM"),
        (kubeconfig(user={"client-certificate-data": _b64(PEM)}), "needs both"),
        (kubeconfig(user={"token": "t", "client-certificate-data": "!!"}), "not base64"),
        (kubeconfig(top={"current-context": "nope"}), "no context “nope”"),
    ]:
        with pytest.raises(ValidationError) as caught:
            services.cluster_create(actor=msp_admin, name="kc", api_url="https://k.example.test",
                                    jurisdiction="DE", credential_kind="kubeconfig",
                                    credentials=config)
        assert message in " ".join(caught.value.message_dict["credentials"]), config


def _store(cluster: Cluster, config: str) -> Cluster:
    """A kubeconfig saved before the allow-list existed: written straight to the row."""
    Cluster.objects.filter(pk=cluster.pk).update(credential_kind="kubeconfig",
                                                 credentials_encrypted=crypto.encrypt(config))
    cluster.refresh_from_db()
    return cluster


def test_a_stored_kubeconfig_with_exec_never_runs_its_command(msp_admin, cluster, kube,
                                                              tmp_path):
    marker = tmp_path / "exec-ran"
    credential = ('{"apiVersion": "client.authentication.k8s.io/v1beta1", '
                  f'"kind": "ExecCredential", "status": {{"token": "{kube.token}"}}}}')
    config = kubeconfig(server=kube.url, user={"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "/bin/sh",
        "args": ["-c", f"touch {marker}; echo '{credential}'"]}})
    _store(cluster, config)
    before = len(kube.log)
    checked = services.cluster_check(actor=msp_admin, cluster=cluster)
    assert not marker.exists()
    assert checked.last_check_ok is False
    assert "users[0].user.exec" in checked.last_check_message
    assert "Nothing was sent" in checked.last_check_message
    assert len(kube.log) == before
    # And saving it through the service is refused before anything could run it.
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        services.cluster_update(actor=msp_admin, cluster=cluster, credential_kind="kubeconfig",
                                credentials=config)
    assert not marker.exists()


def test_a_stored_kubeconfig_with_a_token_file_reads_and_sends_nothing(msp_admin, cluster,
                                                                       kube, tmp_path):
    secret = tmp_path / "portal-secret"
    secret.write_text("the-portal-hosts-secret")
    with recording_server() as elsewhere:
        _store(cluster, kubeconfig(server=elsewhere.url, user={"tokenFile": str(secret)}))
        checked = services.cluster_check(actor=msp_admin, cluster=cluster)
        assert elsewhere.requests == []
    assert checked.last_check_ok is False and "users[0].user.tokenFile" in \
        checked.last_check_message
    assert cluster.api_url == kube.url


def test_the_kubeconfig_server_is_never_used(msp_admin, kube):
    """Only the cluster's api_url is called, whatever server the kubeconfig names."""
    with recording_server() as elsewhere:
        cluster = services.cluster_create(
            actor=msp_admin, name="kc", api_url=kube.url, jurisdiction="DE",
            credential_kind="kubeconfig",
            credentials=kubeconfig(server=elsewhere.url, user={"token": kube.token}))
        checked = services.cluster_check(actor=msp_admin, cluster=cluster)
        assert elsewhere.requests == []
    assert checked.last_check_ok is True, checked.last_check_message
    assert any("/version" in path for _method, path in kube.log)


VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.9", "gitCommit": "abc",
           "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23",
           "compiler": "gc", "platform": "linux/amd64"}


def test_inline_client_certificate_and_ca_data_are_used_over_tls(msp_admin, settings,
                                                                 tmp_path):
    """The client is built from the kubeconfig's inline data alone: the server's certificate
    is checked against the CA data and the name in api_url, and the client certificate is
    presented."""
    settings.OUTBOUND_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    pki = make_pki()
    with tls_server(pki, tmp_path, require_client_cert=True,
                    answers={"/version/": VERSION, "/version": VERSION}) as server:
        config = kubeconfig(server="https://wherever.example.test", cluster={
            "certificate-authority-data": _b64(pki.ca_pem)}, user={
            "client-certificate-data": _b64(pki.client_cert_pem),
            "client-key-data": _b64(pki.client_key_pem)})
        cluster = services.cluster_create(
            actor=msp_admin, name="tls", api_url=f"https://localhost:{server.port}",
            jurisdiction="DE", credential_kind="kubeconfig", credentials=config)
        checked = services.cluster_check(actor=msp_admin, cluster=cluster)
        assert checked.last_check_ok is True, checked.last_check_message
        assert checked.server_version == "v1.31.9"
        assert {subject for _path, _headers, subject in server.requests} == {"portal"}


def test_a_client_key_that_does_not_match_its_certificate_is_refused(msp_admin):
    from django.core.exceptions import ValidationError

    one, other = make_pki(), make_pki()
    with pytest.raises(ValidationError) as caught:
        services.cluster_create(
            actor=msp_admin, name="tls", api_url="https://k.example.test", jurisdiction="DE",
            credential_kind="kubeconfig", credentials=kubeconfig(user={
                "client-certificate-data": _b64(one.client_cert_pem),
                "client-key-data": _b64(other.client_key_pem)}))
    assert "can't be used together" in str(caught.value.message_dict["credentials"])


def test_a_token_is_one_line(msp_admin):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="one line without spaces"):
        services.cluster_create(actor=msp_admin, name="t", api_url="https://k.example.test",
                                jurisdiction="DE", credentials=kubeconfig())
