"""Demo people and tenants for trying the portal. Idempotent; refuses to run in production."""

from decimal import Decimal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from models_catalog.models import Model
from tenants import services
from tenants.models import Membership, PlatformRole, Tenant, TenantRole, User

DEMO_PASSWORD = "Sovereign-demo-2026"

DEMO_MODELS = [
    {"slug": "mistral-7b-instruct", "name": "Mistral 7B Instruct", "task": "chat",
     "provider": "Mistral AI", "license": "Apache-2.0", "context_length": 32768,
     "description": "General-purpose instruction-following chat model.",
     "model_card": "# Mistral 7B Instruct\n\nA 7-billion-parameter chat model.\n\n"
                   "## Intended use\nDrafting, summarising and question answering in "
                   "European languages.\n\n## Limitations\nNo medical or legal advice.",
     "price": ("0.20", "0.60"), "tenants": []},
    {"slug": "bge-m3", "name": "BGE-M3 embeddings", "task": "embeddings", "provider": "BAAI",
     "license": "MIT", "context_length": 8192,
     "description": "Multilingual dense embeddings for retrieval.",
     "model_card": "# BGE-M3\n\nMultilingual embeddings (100+ languages), 1024 dimensions.",
     "price": ("0.02", "0"), "tenants": ["globex"]},
]
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
    # A second MSP admin: model versions need a different person to approve them (four-eyes).
    ("msp2@demo.example", "Noah Keller", PlatformRole.MSP_ADMIN, []),
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
            self._catalog(tenants)
            self._budget(tenants["acme"])
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(self.logins())

    @staticmethod
    def _catalog(tenants: dict[str, Tenant]) -> None:
        """Catalog entries with cards, prices and entitlements — but no versions: a version
        exists only once a real ModelCar went through the upload wizard and its gate."""
        from models_catalog import services as catalog

        for spec in DEMO_MODELS:
            spec = dict(spec)
            price, entitled = spec.pop("price"), spec.pop("tenants")
            if Model.objects.filter(slug=spec["slug"]).exists():
                continue
            model = catalog.model_create(actor=ACTOR, available_to_all_tenants=not entitled,
                                         **spec)
            if entitled:
                catalog.model_set_entitlements(actor=ACTOR, model=model, all_tenants=False,
                                               tenants=[tenants[s] for s in entitled])
            catalog.price_set(actor=ACTOR, model=model, input_per_million=Decimal(price[0]),
                              output_per_million=Decimal(price[1]), currency="EUR")

    @staticmethod
    def _budget(tenant: Tenant) -> None:
        # The demo spans apps; tenants itself never needs billing.
        from billing.budgets import services as budgets
        from billing.budgets.models import Budget

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
