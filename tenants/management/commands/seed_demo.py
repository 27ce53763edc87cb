"""Demo people and tenants for trying the portal. Idempotent; refuses to run in production."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from tenants import services
from tenants.models import Membership, PlatformRole, Tenant, TenantRole, User

DEMO_PASSWORD = "Sovereign-demo-2026"
ACTOR = "system:seed_demo"

TENANTS = [
    {"slug": "acme", "name": "Acme Research", "contact_email": "it@acme.example",
     "jurisdiction": "DE", "max_gpus": 8, "max_api_keys": 25},
    {"slug": "globex", "name": "Globex Health", "contact_email": "ops@globex.example",
     "jurisdiction": "EU", "max_gpus": 4, "max_api_keys": 10},
]
PEOPLE = [
    # email, name, platform role, [(tenant slug, role)]
    ("msp@demo.example", "Mara Schulz", PlatformRole.MSP_ADMIN, []),
    ("compliance@demo.example", "Chris Olsen", PlatformRole.COMPLIANCE_OFFICER, []),
    ("admin@acme.example", "Ada Meyer", None, [("acme", TenantRole.TENANT_ADMIN)]),
    ("dev@acme.example", "Dev Patel", None, [("acme", TenantRole.DEVELOPER)]),
    ("admin@globex.example", "Greta Berg", None, [("globex", TenantRole.TENANT_ADMIN)]),
    ("dev@globex.example", "Gil Moreau", None, [("globex", TenantRole.DEVELOPER)]),
    ("consultant@demo.example", "Kim Laine", None,
     [("acme", TenantRole.DEVELOPER), ("globex", TenantRole.VIEWER)]),
]


class Command(BaseCommand):
    help = "Create demo tenants and people (idempotent). Only with DEBUG=true."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError(
                "seed_demo only runs with DEBUG=true: demo accounts have a published password "
                "and must never exist in production."
            )
        with transaction.atomic():
            tenants = {spec["slug"]: self._tenant(spec) for spec in TENANTS}
            for email, name, platform_role, memberships in PEOPLE:
                user = User.objects.filter(email=email).first() or services.user_create(
                    actor=ACTOR, email=email, password=DEMO_PASSWORD, full_name=name,
                    email_verified=True)
                if platform_role:
                    services.platform_role_grant(actor=ACTOR, user=user, role=platform_role)
                for slug, role in memberships:
                    if not Membership.objects.filter(tenant=tenants[slug], user=user).exists():
                        services.membership_create(actor=ACTOR, tenant=tenants[slug], user=user,
                                                   role=role)
            self._budget(tenants["acme"])
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(self.logins())

    @staticmethod
    def _budget(tenant: Tenant) -> None:
        from decimal import Decimal

        from billing import budgets  # the demo spans apps; tenants itself never needs billing
        from billing.budget_models import Budget

        if not Budget.objects.filter(tenant=tenant).exists():
            budgets.budget_create(actor=ACTOR, tenant=tenant, name="Monthly spend",
                                  amount=Decimal("250.00"), currency=tenant.budget_currency,
                                  thresholds=[50, 80, 100], action="notify")

    def _tenant(self, spec: dict) -> Tenant:
        return Tenant.objects.filter(slug=spec["slug"]).first() or services.tenant_create(
            actor=ACTOR, **spec)

    @staticmethod
    def logins() -> str:
        lines = [f"Demo logins (password for all: {DEMO_PASSWORD}):"]
        for email, _name, platform_role, memberships in PEOPLE:
            roles = [platform_role.label] if platform_role else []
            roles += [f"{TenantRole(role).label} in {slug}" for slug, role in memberships]
            lines.append(f"  {email:<26} {', '.join(roles)}")
        lines.append("  (MSP admins set up an authenticator app at first sign-in.)")
        return "\n".join(lines)
