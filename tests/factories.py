import factory
from allauth.account.models import EmailAddress
from allauth.mfa.totp.internal.auth import TOTP
from factory.django import DjangoModelFactory

from tenants.models import Membership, PlatformRole, PlatformRoleGrant, Tenant, TenantRole, User

PASSWORD = "Correct-horse-battery-9"
# A fixed base32 secret; tests compute codes for it with their own RFC 6238 implementation.
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


class UserFactory(DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"person{n}@example.test")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")

    @factory.post_generation
    def password(self, create, value, **kwargs):
        self.set_password(value or PASSWORD)
        if create:
            self.save(update_fields=["password"])
            EmailAddress.objects.create(user=self, email=self.email, primary=True, verified=True)

    @factory.post_generation
    def totp(self, create, value, **kwargs):
        """`UserFactory(totp=True)` gives the user an activated authenticator app."""
        if create and value:
            TOTP.activate(self, TOTP_SECRET if value is True else value)


class TenantFactory(DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.Sequence(lambda n: f"Tenant {n}")
    contact_email = factory.LazyAttribute(lambda t: f"contact@{t.slug}.test")
    jurisdiction = "DE"


class MembershipFactory(DjangoModelFactory):
    class Meta:
        model = Membership

    tenant = factory.SubFactory(TenantFactory)
    user = factory.SubFactory(UserFactory)
    role = TenantRole.DEVELOPER


def make_msp_admin(**kwargs) -> User:
    user = UserFactory(totp=True, **kwargs)
    PlatformRoleGrant.objects.create(user=user, role=PlatformRole.MSP_ADMIN)
    return user


def make_compliance_officer(**kwargs) -> User:
    user = UserFactory(**kwargs)
    PlatformRoleGrant.objects.create(user=user, role=PlatformRole.COMPLIANCE_OFFICER)
    return user


def published_version(model=None, *, version: str = "1.0", approver=None, files=None,
                      repository: str | None = None, digest: str | None = None):
    """A signed, published ModelVersion without a registry: for tests of what consumes
    versions (deployments, reports). The catalog's own tests publish through the registry."""
    import hashlib

    from models_catalog.models import Model, ModelFile, ModelVersion, ScanVerdict, VersionStatus
    from models_catalog.signing import version_sign

    if model is None:
        model = Model.objects.create(slug=f"model-{Model.objects.count() + 1}",
                                     name="Test model", task="chat")
    digest = digest or "sha256:" + hashlib.sha256(f"{model.slug}:{version}".encode()).hexdigest()
    mv = ModelVersion.objects.create(
        model=model, version=version, status=VersionStatus.PUBLISHED,
        trusted_repository=repository or f"trusted/{model.slug}", manifest_digest=digest,
        landing_repository=f"landing/{model.slug}", scan_verdict=ScanVerdict.CLEAN,
        sbom='{"bomFormat": "CycloneDX"}', approved_by=approver)
    for path, content in (files or {"config.json": b"{}", "model.safetensors": b"x"}).items():
        ModelFile.objects.create(version=mv, path=path, size_bytes=len(content),
                                 sha256=hashlib.sha256(content).hexdigest(), format="json")
    version_sign(mv, approver_email=approver.email if approver else "approver@example.test")
    mv.save()
    return mv
