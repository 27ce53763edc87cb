import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from models_catalog.models import Model, ModelVersion
from tenants.models import Membership, PlatformRoleGrant, Tenant, User

pytestmark = pytest.mark.django_db


def test_seed_demo_is_idempotent_and_audited(settings, capsys):
    settings.DEBUG = True
    call_command("seed_demo")
    counts = (User.objects.count(), Tenant.objects.count(), Membership.objects.count(),
              PlatformRoleGrant.objects.count(), AuditEvent.objects.count())
    assert counts[:4] == (8, 2, 6, 3)  # two MSP admins: model approval needs four eyes
    # Demo catalog entries, with cards and prices but no versions (those pass the real gate).
    assert set(Model.objects.values_list("slug", flat=True)) == {"mistral-7b-instruct", "bge-m3"}
    assert not ModelVersion.objects.exists()
    call_command("seed_demo")
    assert (User.objects.count(), Tenant.objects.count(), Membership.objects.count(),
            PlatformRoleGrant.objects.count(), AuditEvent.objects.count()) == counts
    from billing.models import Budget

    assert list(Budget.objects.values_list("tenant__slug", "name")) == [("acme", "Monthly spend")]
    out = capsys.readouterr().out
    assert "msp@demo.example" in out and "Sovereign-demo-2026" in out
    user = User.objects.get(email="dev@acme.example")
    assert user.check_password("Sovereign-demo-2026")
    assert user.emailaddress_set.get().verified


def test_seed_demo_refuses_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG=true"):
        call_command("seed_demo")
    assert not User.objects.exists()
