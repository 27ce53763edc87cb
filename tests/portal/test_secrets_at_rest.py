"""Secrets at rest: FIELD_ENCRYPTION_KEYS (first key encrypts, every key decrypts), required in
production; `secrets_rotate` moves every stored secret to the first key, once, audited; values
of the former SECRET_KEY-derived key stay readable while that happens."""

import ipaddress
import json
import re
from io import StringIO
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from billing.models import WebhookEndpoint
from billing.notifications import services as webhooks
from deployments import services as deployment_services
from deployments.models import Cluster, Deployment
from models_catalog import services as catalog_services
from portal import crypto, stored_secrets
from tests.portal.test_settings import _check
from tests.support.secret_keys import keys, new_key

ROOT = Path(__file__).resolve().parents[2]
NOWHERE = "http://127.0.0.1:9"  # refuses connections: registering records a failed check
GENERATE = "Fernet.generate_key()"


# --- configuration ------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,named", [
    ({"FIELD_ENCRYPTION_KEYS": None}, "FIELD_ENCRYPTION_KEYS is not set"),
    ({"FIELD_ENCRYPTION_KEYS": f"{Fernet.generate_key().decode()},not-a-key"},
     "FIELD_ENCRYPTION_KEYS: key #2 is not a Fernet key"),
    ({"FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode()},
     "FIELD_ENCRYPTION_KEY was renamed FIELD_ENCRYPTION_KEYS"),
    ({"FIELD_ENCRYPTION_KEYS": None, "FIELD_ENCRYPTION_KEYS_FILE": "/nonexistent/keys"},
     "FIELD_ENCRYPTION_KEYS_FILE"),
])
def test_production_needs_valid_encryption_keys_and_says_how_to_make_one(overrides, named):
    result = _check(**overrides)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and named in result.stderr
    if "not set" in named or "not a Fernet key" in named:
        assert GENERATE in result.stderr
    assert "not-a-key" not in result.stderr  # a key (even a bad one) is never echoed


def test_keys_may_come_from_a_file_and_debug_may_derive_one(tmp_path):
    key_file = tmp_path / "keys"
    key_file.write_text(f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}\n")

    assert _check(FIELD_ENCRYPTION_KEYS=None,
                  FIELD_ENCRYPTION_KEYS_FILE=str(key_file)).returncode == 0
    assert _check(FIELD_ENCRYPTION_KEYS=None, DEBUG="true").returncode == 0


def test_the_first_key_encrypts_and_every_key_decrypts():
    old, new = new_key(), new_key()
    with keys(old):
        written_before = crypto.encrypt("upstream-secret")
    with keys(new, old):
        written_after = crypto.encrypt("upstream-secret")
        assert crypto.decrypt(written_before) == crypto.decrypt(written_after) == \
            "upstream-secret"
        assert not crypto.is_current(written_before) and crypto.is_current(written_after)
    Fernet(new.encode()).decrypt(written_after.encode())
    with keys(new), pytest.raises(crypto.SecretUnreadable):
        crypto.decrypt(written_before)


# --- every stored secret ------------------------------------------------------------------

def test_every_stored_secret_is_an_encrypted_field_and_read_through_one_place():
    found = {f"{model._meta.label}.{field.name}" for model, field in
             stored_secrets.secret_fields()}
    assert found == {"deployments.Cluster.credentials_encrypted",
                     "deployments.Deployment.upstream_api_key_encrypted",
                     "billing.WebhookEndpoint.secret_encrypted"}
    from django.apps import apps
    named_like_secrets = {f"{m._meta.label}.{f.name}" for m in apps.get_models()
                          for f in m._meta.local_fields if f.name.endswith("_encrypted")}
    assert named_like_secrets == found
    # Reading a secret anywhere else would skip the per-object handling of unreadable ones.
    readers = [str(path.relative_to(ROOT)) for app in
               ("portal", "tenants", "models_catalog", "deployments", "gateway", "billing",
                "audit") for path in (ROOT / app).rglob("*.py")
               if re.search(r"crypto\.(decrypt|rotate)\(", path.read_text())]
    assert readers == ["portal/stored_secrets.py"]


@pytest.fixture
def stored(db, msp_admin, tenant, settings):
    """A cluster, an external endpoint and a webhook endpoint, their secrets written under
    `old`; returns the objects, their plaintexts and the key. These are the only stored
    secrets: the acting MSP admin's authenticator app (a stored secret too, under the
    suite's key) is removed; second-factor seeds have tests of their own
    (tests/identity/test_second_factor_at_rest.py)."""
    from allauth.mfa.models import Authenticator

    Authenticator.objects.filter(user=msp_admin).delete()
    settings.BUDGET_WEBHOOK_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    old = new_key()
    model = catalog_services.model_create(actor=msp_admin, slug="chat-small", name="Chat",
                                          task="chat")
    with keys(old):
        cluster = deployment_services.cluster_create(
            actor=msp_admin, name="fra-1", api_url=NOWHERE, jurisdiction="DE",
            credentials="cluster-token-value")
        deployment = deployment_services.external_endpoint_register(
            actor=msp_admin, model=model, base_url=NOWHERE + "/v1",
            upstream_api_key="upstream-key-value")
        endpoint, signing_secret = webhooks.webhook_endpoint_create(
            actor=msp_admin, tenant=tenant, name="Finance", url=NOWHERE + "/hook")
    return {"old": old, "objects": (cluster, deployment, endpoint),
            "plaintexts": ("cluster-token-value", "upstream-key-value", signing_secret)}


def _tokens(objects) -> list[str]:
    fields = {Cluster: "credentials_encrypted", Deployment: "upstream_api_key_encrypted",
              WebhookEndpoint: "secret_encrypted"}
    return [getattr(type(o).objects.get(pk=o.pk), fields[type(o)]) for o in objects]


def test_secrets_rotate_moves_every_secret_to_the_first_key_once_and_audits_counts(stored):
    new = new_key()
    before = _tokens(stored["objects"])
    with keys(new, stored["old"]):
        first, second = StringIO(), StringIO()
        call_command("secrets_rotate", stdout=first)
        after = _tokens(stored["objects"])
        call_command("secrets_rotate", stdout=second)
        assert _tokens(stored["objects"]) == after  # the second run writes nothing

    assert "Total: 3 re-encrypted, 0 already current, 0 unreadable." in first.getvalue()
    assert "Total: 0 re-encrypted, 3 already current, 0 unreadable." in second.getvalue()
    assert "deployments.cluster.credentials_encrypted: 1 re-encrypted" in first.getvalue()
    for token in after:
        Fernet(new.encode()).decrypt(token.encode())
    with keys(new):  # the old key can go now
        readable = [stored_secrets.reveal(o, f) for o, f in zip(
            [type(o).objects.get(pk=o.pk) for o in stored["objects"]],
            ("credentials_encrypted", "upstream_api_key_encrypted", "secret_encrypted"),
            strict=True)]
    assert readable == list(stored["plaintexts"])

    events = list(AuditEvent.objects.filter(action="secrets.rotated").order_by("seq"))
    assert [(e.details["rotated"], e.details["current"], e.details["unreadable"])
            for e in events] == [(3, 0, 0), (0, 3, 0)]
    assert events[0].actor_label == "system:secrets_rotate"
    trail = json.dumps([e.details for e in AuditEvent.objects.all()])
    for secret in (*stored["plaintexts"], *before, *after, new, stored["old"]):
        assert secret not in trail


def test_secrets_rotate_reports_what_it_cannot_decrypt_and_carries_on(stored, msp_admin):
    cluster, deployment, endpoint = stored["objects"]
    lost = new_key()
    with keys(lost):  # this one key is then lost
        deployment_services.cluster_update(actor=msp_admin, cluster=cluster,
                                           credentials="cluster-token-2")
    new = new_key()
    with keys(new, stored["old"]):
        out, err = StringIO(), StringIO()
        with pytest.raises(CommandError, match="1 stored secret"):
            call_command("secrets_rotate", stdout=out, stderr=err)
        with pytest.raises(CommandError):
            call_command("secrets_rotate", stdout=StringIO(), stderr=StringIO())

    assert "Total: 2 re-encrypted, 0 already current, 1 unreadable." in out.getvalue()
    assert f"cluster fra-1 (#{cluster.pk})" in err.getvalue()
    assert "Enter the token or kubeconfig again" in err.getvalue()
    with keys(new):
        assert stored_secrets.problems(Deployment.objects.get(pk=deployment.pk)) == []
        assert stored_secrets.problems(WebhookEndpoint.objects.get(pk=endpoint.pk)) == []
    rotated = AuditEvent.objects.filter(action="secrets.rotated").order_by("seq").first()
    assert rotated.details["unreadable_objects"] == [f"deployments.cluster:{cluster.pk}"]
    unreadable = AuditEvent.objects.filter(action="secret.unreadable")
    assert unreadable.count() == 1  # once per object, not once per run
    assert unreadable.get().target_id == str(cluster.pk)


def test_values_of_the_secret_key_derived_key_stay_readable_until_rotated(stored, settings):
    cluster = stored["objects"][0]
    legacy = Fernet(crypto.derived_key(settings.SECRET_KEY)).encrypt(b"legacy-token").decode()
    Cluster.objects.filter(pk=cluster.pk).update(credentials_encrypted=legacy)
    cluster.refresh_from_db()
    new = new_key()

    with keys(new), pytest.raises(stored_secrets.SecretUnreadable):
        stored_secrets.reveal(cluster, "credentials_encrypted")
    with keys(new, stored["old"], legacy_derived=True):
        assert stored_secrets.reveal(cluster, "credentials_encrypted") == "legacy-token"
        Fernet(new.encode()).decrypt(crypto.encrypt("x").encode())  # it never encrypts
        call_command("secrets_rotate", stdout=StringIO())
    cluster.refresh_from_db()
    with keys(new):
        assert stored_secrets.reveal(cluster, "credentials_encrypted") == "legacy-token"
