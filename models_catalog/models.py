from __future__ import annotations

import uuid
from decimal import Decimal

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from portal.text import validate_display_name
from tenants.models import Tenant, slug_validator


class ModelTask(models.TextChoices):
    """What a model does, so which gateway APIs serve it: chat models the chat, messages,
    responses and completions APIs; completion models completions; embedding models embeddings."""

    CHAT = "chat", "Chat"
    COMPLETION = "completion", "Completion"
    EMBEDDINGS = "embeddings", "Embeddings"


class ModelLifecycle(models.TextChoices):
    ACTIVE = "active", "Active"
    DEPRECATED = "deprecated", "Deprecated"  # serves with a warning; no new deployments
    RETIRED = "retired", "Retired"  # serves nothing


class Model(models.Model):
    """A model offered on the platform; what `model` names in an OpenAI-style request."""

    slug = models.SlugField(max_length=100, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200, validators=[validate_display_name])
    task = models.CharField(max_length=16, choices=ModelTask.choices)
    description = models.TextField(blank=True)
    model_card = models.TextField(blank=True, help_text="Markdown; rendered without raw HTML.")
    provider = models.CharField("provider / family", max_length=100, blank=True,
                                validators=[validate_display_name])
    license = models.CharField(max_length=100, blank=True, validators=[validate_display_name])
    context_length = models.PositiveIntegerField(null=True, blank=True)
    lifecycle = models.CharField(max_length=16, choices=ModelLifecycle.choices,
                                 default=ModelLifecycle.ACTIVE)
    # A deprecation's dates (RFC 9745 `Deprecation`, RFC 8594 `Sunset` at the gateway) and the
    # model to move to: after the sunset the gateway refuses requests for this model, naming it.
    deprecated_at = models.DateTimeField(null=True, blank=True)
    sunset_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When a deprecated model stops serving; the gateway then names its successor.")
    successor = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+", help_text="The model to move to.")
    available_to_all_tenants = models.BooleanField(
        default=True, help_text="Otherwise only the tenants listed as entitled may use it.")
    entitled_tenants = models.ManyToManyField(Tenant, blank=True, related_name="entitled_models")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        """A catalog model is shown by its slug: the name API clients send as `model` on /v1,
        and the one audit events and statements carry."""
        return self.slug


currency_validator = RegexValidator(r"^[A-Z]{3}$", "Use a three-letter ISO 4217 code, e.g. EUR.")


class ModelPrice(models.Model):
    """Price per million tokens (input, cached input, output) from `effective_from` on. Rows
    are never edited: a new price is a new row, so usage is always charged at the price in
    force when it was served."""

    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="prices")
    input_per_million = models.DecimalField(max_digits=12, decimal_places=6,
                                            validators=[MinValueValidator(Decimal("0"))])
    output_per_million = models.DecimalField(max_digits=12, decimal_places=6,
                                             validators=[MinValueValidator(Decimal("0"))])
    cached_input_per_million = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True,
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Price of input tokens the model server read from its prefix cache; empty: "
                  "the input price.")
    currency = models.CharField(max_length=3, default="EUR", validators=[currency_validator])
    effective_from = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"],
                                    name="one_price_per_model_and_instant"),
        ]

    def __str__(self) -> str:
        return f"{self.model}: {self.input_per_million}/{self.output_per_million} {self.currency}"


class VersionStatus(models.TextChoices):
    """The supply-chain gate a version passes through; changed only by services, each audited,
    along `VERSION_TRANSITIONS`. Only published versions can be deployed."""

    UPLOADING = "uploading", "Uploading"
    QUARANTINED = "quarantined", "Quarantined"
    SCANNING = "scanning", "Scanning"
    REJECTED = "rejected", "Rejected"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    PUBLISHED = "published", "Published"
    DEPRECATED = "deprecated", "Deprecated"
    RETIRED = "retired", "Retired"


# Which status may follow which. Anything else is refused by the services.
VERSION_TRANSITIONS: dict[str, frozenset[str]] = {
    VersionStatus.UPLOADING: frozenset({VersionStatus.QUARANTINED, VersionStatus.REJECTED}),
    VersionStatus.QUARANTINED: frozenset({VersionStatus.SCANNING, VersionStatus.REJECTED}),
    # A scan that could not finish (registry down) returns the version to quarantine.
    VersionStatus.SCANNING: frozenset({VersionStatus.REJECTED, VersionStatus.AWAITING_APPROVAL,
                                       VersionStatus.QUARANTINED}),
    VersionStatus.AWAITING_APPROVAL: frozenset({VersionStatus.PUBLISHED,
                                                VersionStatus.REJECTED}),
    VersionStatus.PUBLISHED: frozenset({VersionStatus.DEPRECATED, VersionStatus.RETIRED}),
    VersionStatus.DEPRECATED: frozenset({VersionStatus.PUBLISHED, VersionStatus.RETIRED}),
    VersionStatus.REJECTED: frozenset(),
    VersionStatus.RETIRED: frozenset(),
}

DEPLOYABLE_STATUSES = frozenset({VersionStatus.PUBLISHED})


class ScanVerdict(models.TextChoices):
    """The scan's verdict on a version's image: malicious rejects it, suspicious needs
    a note saying why it is acceptable before the version can be submitted for approval."""

    CLEAN = "clean", "Clean"
    SUSPICIOUS = "suspicious", "Suspicious"
    MALICIOUS = "malicious", "Malicious"


class SignatureCheck(models.TextChoices):
    """The outcome of the last check of a version's signed statement."""

    VERIFIED = "verified", "Verified"
    FAILED = "failed", "Does not verify"


digest_validator = RegexValidator(r"^sha256:[0-9a-f]{64}$",
                                  "A digest looks like sha256:<64 hex digits>.")
# A lineage reference's digest, in the OCI digest grammar (`algorithm:encoded`): sha256:…,
# sha512:…, or whatever the source names its snapshots with (e.g. git:<commit>).
lineage_digest_validator = RegexValidator(
    r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]{8,256}$",
    "A digest looks like algorithm:value, e.g. sha256:<64 hex digits>.")


class ArtifactKind(models.TextChoices):
    """How a version's weights are packaged in the registry."""

    MODELCAR = "modelcar", "ModelCar image"  # an OCI image with the files under /models
    MODELPACK = "modelpack", "CNCF ModelPack artifact"  # application/vnd.cncf.model.*


class ModelVersion(models.Model):
    """One ModelCar image of a model: an OCI image with the weights under /models.

    The image is pinned by its manifest digest from upload on; publishing copies exactly that
    digest from the landing (quarantine) repository to the trusted one, and the signed
    statement binds digest, file digests, SBOM and verdict together.
    """

    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="versions")
    version = models.CharField(max_length=64, validators=[RegexValidator(
        r"^[A-Za-z0-9][A-Za-z0-9._-]*$", "Use letters, digits, dots, dashes and underscores.")])
    status = models.CharField(max_length=20, choices=VersionStatus.choices,
                              default=VersionStatus.UPLOADING)
    status_reason = models.TextField(blank=True)
    # A deprecated version's sunset date and the model to move to (its tenants are told).
    deprecated_at = models.DateTimeField(null=True, blank=True)
    sunset_at = models.DateTimeField(null=True, blank=True)
    successor = models.ForeignKey(Model, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")

    landing_repository = models.CharField(max_length=255, blank=True)
    trusted_repository = models.CharField(max_length=255, blank=True)
    manifest_digest = models.CharField(max_length=71, blank=True, validators=[digest_validator])
    manifest_media_type = models.CharField(max_length=100, blank=True)
    artifact_kind = models.CharField(max_length=16, choices=ArtifactKind.choices,
                                     default=ArtifactKind.MODELCAR)
    size_bytes = models.BigIntegerField(null=True, blank=True)

    # Lineage: the base model is either another catalog version or an external identifier
    # (with its digest); datasets are `DatasetReference` rows. Provenance queries walk these.
    base_version = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="derived_versions")
    base_model = models.CharField("external base model", max_length=200, blank=True,
                                  validators=[validate_display_name])
    base_model_digest = models.CharField(max_length=300, blank=True,
                                         validators=[lineage_digest_validator])
    training_data = models.CharField("training data snapshot", max_length=500, blank=True)
    source_commit = models.CharField(max_length=200, blank=True)
    hyperparameters = models.JSONField(default=dict, blank=True)

    scan_verdict = models.CharField(max_length=16, choices=ScanVerdict.choices, blank=True)
    scan_report = models.JSONField(null=True, blank=True)
    scan_progress = models.JSONField(default=dict, blank=True,
                                     help_text="Phase, done and total of a running scan.")
    scanned_at = models.DateTimeField(null=True, blank=True)

    sbom = models.TextField(blank=True, help_text="CycloneDX 1.6 JSON")
    tokenizer = models.TextField(
        blank=True, help_text="The image's /models/tokenizer.json: the gateway counts tokens "
                              "with it when a model server reports no usage.")
    sbom_digest = models.CharField(max_length=71, blank=True)

    signed_statement = models.TextField(blank=True, help_text="Canonical JSON that was signed")
    signature = models.TextField(blank=True, help_text="Base64 Ed25519 signature")
    signature_key_id = models.CharField(max_length=32, blank=True)
    signature_artifact_digest = models.CharField(max_length=71, blank=True)
    # The OpenSSF Model Signing (OMS) signature of the /models files: a Sigstore bundle
    # signed with the platform's EC model-signing key, attached to the image as a referrer.
    model_signature = models.TextField(blank=True, help_text="OMS Sigstore bundle (JSON)")
    model_signature_artifact_digest = models.CharField(max_length=71, blank=True)
    signed_at = models.DateTimeField(null=True, blank=True)
    # The last check of the signature (on publication, before each deploy, or asked for):
    # pages show it instead of checking on every render.
    signature_status = models.CharField(max_length=16, choices=SignatureCheck.choices,
                                        blank=True)
    signature_checked_at = models.DateTimeField(null=True, blank=True)
    signature_detail = models.TextField(blank=True)

    # Background work (push, scan) reports here; beat takes over work that stopped reporting.
    progress_at = models.DateTimeField(null=True, blank=True)
    scan_attempts = models.PositiveSmallIntegerField(default=0)
    # Set when a background step failed for reasons outside the image (registry down):
    # the version keeps its status and the MSP admin may retry.
    work_error = models.TextField(blank=True)

    uploaded_by = models.ForeignKey("tenants.User", null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    submitted_by = models.ForeignKey("tenants.User", null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="+")
    submitted_at = models.DateTimeField(null=True, blank=True)
    submit_note = models.TextField(blank=True, help_text="Why suspicious findings are acceptable")
    approved_by = models.ForeignKey("tenants.User", null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    approved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="one_label_per_model"),
        ]

    def __str__(self) -> str:
        return f"{self.model.slug}:{self.version}"

    @property
    def display_status(self) -> str:
        if self.status == VersionStatus.AWAITING_APPROVAL and not self.submitted_at:
            return "Findings to review"
        return self.get_status_display()

    @property
    def is_deployable(self) -> bool:
        return self.status in DEPLOYABLE_STATUSES

    @property
    def signature_check_current(self) -> bool:
        """The stored check still describes the version: nothing saved it since."""
        return (self.signature_checked_at is not None and self.updated_at is not None
                and self.signature_checked_at >= self.updated_at)

    @property
    def is_modelpack(self) -> bool:
        return self.artifact_kind == ArtifactKind.MODELPACK

    def storage_uri(self, registry_host: str) -> str:
        """KServe's `storageUri`, pinned by digest: a ModelCar runs as a sidecar image
        (`oci://`), a ModelPack artifact is mounted as an image volume (`oci+native://`)."""
        scheme = "oci+native" if self.is_modelpack else "oci"
        return f"{scheme}://{registry_host}/{self.trusted_repository}@{self.manifest_digest}"


class DatasetReference(models.Model):
    """A dataset a version was trained or tuned on, by identifier and (snapshot) digest: what
    a provenance query for a dataset (e.g. a GDPR erasure request) looks for."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="datasets")
    identifier = models.CharField(max_length=300, validators=[validate_display_name])
    digest = models.CharField(max_length=300, blank=True, validators=[lineage_digest_validator])

    class Meta:
        ordering = ["version", "identifier", "digest"]
        constraints = [
            models.UniqueConstraint(fields=["version", "identifier", "digest"],
                                    name="one_reference_per_dataset_snapshot"),
        ]
        indexes = [models.Index(fields=["identifier"], name="dataset_ref_identifier")]

    def __str__(self) -> str:
        return f"{self.identifier}@{self.digest}" if self.digest else self.identifier


class ModelFile(models.Model):
    """One file under /models in a version's image, as found by the scan."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=1000)
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    format = models.CharField(max_length=32)

    class Meta:
        ordering = ["version", "path"]
        constraints = [
            models.UniqueConstraint(fields=["version", "path"], name="one_entry_per_path"),
        ]

    def __str__(self) -> str:
        return self.path


class TrainingApproach(models.TextChoices):
    """CycloneDX 1.6 `modelCard.modelParameters.approach.type`, spelled as the schema spells
    it: Annex XII information gives it, and each new SBOM's model card carries it."""

    SUPERVISED = "supervised", "Supervised"
    UNSUPERVISED = "unsupervised", "Unsupervised"
    REINFORCEMENT_LEARNING = "reinforcement-learning", "Reinforcement learning"
    SEMI_SUPERVISED = "semi-supervised", "Semi-supervised"
    SELF_SUPERVISED = "self-supervised", "Self-supervised"


class AnnexXIIInformation(models.Model):
    """What the EU AI Act's Annex XII asks a model provider to give deployers, per model.

    Licence and context window live on `Model` (one source for the card, the gateway and
    this); the rest is here. It goes into each new SBOM's model card, the evidence bundle
    and the tenants' model page.
    """

    model = models.OneToOneField(Model, on_delete=models.CASCADE, related_name="annex_xii")
    intended_tasks = models.TextField(
        blank=True, help_text="The tasks the model is meant for, and the kinds of AI systems "
                              "it can be built into.")
    acceptable_use = models.TextField("acceptable use policy", blank=True)
    architecture = models.CharField(max_length=200, blank=True,
                                    help_text="e.g. decoder-only transformer, 26 layers")
    parameter_count = models.PositiveBigIntegerField(null=True, blank=True)
    training_approach = models.CharField(max_length=32, choices=TrainingApproach.choices,
                                         blank=True)
    input_modalities = models.CharField(max_length=200, blank=True,
                                        help_text="e.g. text; text and image")
    output_modalities = models.CharField(max_length=200, blank=True,
                                         help_text="e.g. text; embedding vector")
    training_data_summary = models.TextField(
        blank=True, help_text="Type and provenance of the training, testing and validation "
                              "data, and how it was curated.")
    limitations = models.TextField("known limitations", blank=True)
    training_energy_kwh = models.DecimalField(
        "training energy (kWh)", max_digits=16, decimal_places=3, null=True, blank=True,
        validators=[MinValueValidator(Decimal("0"))], help_text="Leave empty when not known.")
    updated_by = models.ForeignKey("tenants.User", null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Annex XII information of {self.model}"

    @property
    def training_energy_text(self) -> str:
        """The energy without trailing zeros, never in exponent form ("1234.5", "1000")."""
        if self.training_energy_kwh is None:
            return ""
        return format(self.training_energy_kwh.normalize(), "f")


class UploadStatus(models.TextChoices):
    """Where a browser upload stands: receiving chunks, received whole, then pushed to
    the landing repository, or failed when the archive was refused there."""

    RECEIVING = "receiving", "Receiving"
    RECEIVED = "received", "Received"
    PUSHED = "pushed", "Pushed to landing"
    FAILED = "failed", "Failed"


class UploadSession(models.Model):
    """A resumable browser upload of one ModelCar archive, appended chunk by chunk to a file
    under MODEL_UPLOAD_DIR; the browser asks for `received_bytes` to resume."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    version = models.OneToOneField(ModelVersion, on_delete=models.CASCADE,
                                   related_name="upload")
    filename = models.CharField(max_length=255)
    size_bytes = models.BigIntegerField()
    received_bytes = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=UploadStatus.choices,
                              default=UploadStatus.RECEIVING)
    created_by = models.ForeignKey("tenants.User", null=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.filename} ({self.received_bytes}/{self.size_bytes})"
