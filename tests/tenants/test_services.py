from decimal import Decimal

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from audit.models import AuditEvent
from portal.api import ApplicationError
from tenants import services
from tenants.models import Invitation, Membership, TenantRole, TenantStatus
from tenants.tasks import send_invitation_email
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def _actions() -> list[str]:
    return list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))


def test_tenant_create_is_audited_with_its_values(msp_admin):
    tenant = services.tenant_create(actor=msp_admin, slug="acme", name="Acme", jurisdiction="DE",
                                    contact_email="it@acme.test", max_gpus=4,
                                    default_monthly_budget=Decimal("1000.00"))
    event = AuditEvent.objects.get(action="tenant.created")
    assert event.tenant_id == tenant.pk and event.actor_label == msp_admin.email
    assert event.details["max_gpus"] == 4
    assert event.details["default_monthly_budget"] == "1000.00"


@pytest.mark.parametrize("field,value", [
    ("slug", "Not A Slug"), ("jurisdiction", "Germany"), ("contact_email", "nope"),
    ("budget_currency", "euro"),
])
def test_tenant_create_rejects_bad_values_and_records_nothing(msp_admin, field, value):
    values = {"slug": "acme", "name": "Acme", "jurisdiction": "DE",
              "contact_email": "it@acme.test", "budget_currency": "EUR", field: value}
    with pytest.raises(ValidationError) as exc:
        services.tenant_create(actor=msp_admin, **values)
    assert field in exc.value.error_dict
    assert _actions() == []


def test_tenant_update_records_profile_and_quota_changes_separately(msp_admin, tenant):
    services.tenant_update(actor=msp_admin, tenant=tenant, name="Acme GmbH", max_gpus=16)
    events = {e.action: e.details for e in AuditEvent.objects.all()}
    assert events["tenant.updated"]["changes"] == {"name": {"from": "Acme Research",
                                                            "to": "Acme GmbH"}}
    assert events["tenant.quotas_changed"]["changes"] == {"max_gpus": {"from": 0, "to": 16}}


def test_tenant_update_without_changes_records_nothing(msp_admin, tenant):
    services.tenant_update(actor=msp_admin, tenant=tenant, name=tenant.name)
    assert _actions() == []


def test_suspend_and_reactivate(msp_admin, tenant):
    services.tenant_set_status(actor=msp_admin, tenant=tenant, status=TenantStatus.SUSPENDED,
                               reason="unpaid")
    tenant.refresh_from_db()
    assert tenant.status == TenantStatus.SUSPENDED
    with pytest.raises(ApplicationError, match="already suspended"):
        services.tenant_set_status(actor=msp_admin, tenant=tenant, status=TenantStatus.SUSPENDED)
    services.tenant_set_status(actor=msp_admin, tenant=tenant, status=TenantStatus.ACTIVE)
    assert _actions() == ["tenant.suspended", "tenant.reactivated"]
    assert AuditEvent.objects.get(action="tenant.suspended").details == {"reason": "unpaid"}


def test_invitation_mail_and_acceptance(msp_admin, tenant, settings,
                                        django_capture_on_commit_callbacks):
    settings.PORTAL_BASE_URL = "https://portal.example.test"
    with django_capture_on_commit_callbacks() as callbacks:
        invitation, token = services.invitation_create(actor=msp_admin, tenant=tenant,
                                                       email="New.Person@Example.test",
                                                       role=TenantRole.DEVELOPER)
    assert len(callbacks) == 1  # the e-mail is queued only once the invitation is committed
    assert invitation.email == "new.person@example.test"
    assert invitation.token_hash != token and token not in invitation.token_hash

    send_invitation_email(invitation.pk, token)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["new.person@example.test"]
    assert f"https://portal.example.test/invitations/{token}/" in mail.outbox[0].body

    person = UserFactory(email="new.person@example.test")
    membership = services.invitation_accept(user=person, token=token)
    assert (membership.tenant, membership.role) == (tenant, TenantRole.DEVELOPER)
    with pytest.raises(ApplicationError, match="no longer valid"):
        services.invitation_accept(user=person, token=token)
    assert _actions() == ["invitation.created", "invitation.accepted", "membership.created"]


def test_invitation_for_someone_else_is_refused(msp_admin, tenant,
                                                django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        _invitation, token = services.invitation_create(
            actor=msp_admin, tenant=tenant, email="invited@example.test", role="viewer")
    intruder = UserFactory(email="intruder@example.test")
    with pytest.raises(ApplicationError, match="is for invited@example.test"):
        services.invitation_accept(user=intruder, token=token)
    assert not Membership.objects.filter(user=intruder).exists()


def test_reinviting_replaces_the_open_invitation(msp_admin, tenant,
                                                 django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        first, first_token = services.invitation_create(
            actor=msp_admin, tenant=tenant, email="x@example.test", role="viewer")
        second, _ = services.invitation_create(
            actor=msp_admin, tenant=tenant, email="X@example.test", role="developer")
    first.refresh_from_db()
    assert first.revoked_at is not None and second.is_open
    with pytest.raises(ApplicationError):
        services.invitation_accept(user=UserFactory(email="x@example.test"), token=first_token)


def test_inviting_an_existing_member_is_a_field_error(msp_admin, tenant, developer):
    with pytest.raises(ValidationError) as exc:
        services.invitation_create(actor=msp_admin, tenant=tenant, email=developer.email,
                                   role="viewer")
    assert "already a member" in exc.value.message_dict["email"][0]
    assert not Invitation.objects.exists()


def test_the_last_tenant_admin_cannot_be_demoted_or_removed(msp_admin, tenant, tenant_admin):
    membership = Membership.objects.get(user=tenant_admin)
    with pytest.raises(ApplicationError, match="last tenant admin"):
        services.membership_change_role(actor=msp_admin, membership=membership, role="viewer")
    with pytest.raises(ApplicationError, match="last tenant admin"):
        services.membership_remove(actor=msp_admin, membership=membership)
    second = MembershipFactory(tenant=tenant, role=TenantRole.TENANT_ADMIN)
    services.membership_remove(actor=msp_admin, membership=membership)
    assert list(Membership.objects.filter(tenant=tenant)) == [second]
    assert AuditEvent.objects.get(action="membership.removed").details == {
        "user": tenant_admin.email, "role": "tenant_admin"}
