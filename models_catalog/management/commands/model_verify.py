"""`python manage.py model_verify <model> <version>`: does the published version still match
what was approved and signed — in the database and, unless --offline, in the registry?"""

from django.core.management.base import BaseCommand, CommandError

from models_catalog.registry import NOT_CONFIGURED, registry_configured
from models_catalog.selectors import version_find
from models_catalog.signing import version_verify, version_verify_registry


class Command(BaseCommand):
    help = "Verify a model version's signed approval statement (and its registry attachment)."

    def add_arguments(self, parser):
        parser.add_argument("model", help="the model's slug")
        parser.add_argument("version", help="the version label")
        parser.add_argument("--offline", action="store_true",
                            help="check the signature and the database only, not the registry")

    def handle(self, *args, model: str, version: str, offline: bool, **options):
        mv = version_find(model_slug=model, version=version)
        if mv is None:
            raise CommandError(f"No version {version!r} of model {model!r}.")
        if not offline and not registry_configured():
            raise CommandError(f"{NOT_CONFIGURED} Or add --offline to check the signature "
                               "and the database only.")
        result = version_verify(mv) if offline else version_verify_registry(mv)
        if not result:
            raise CommandError(f"{mv}: NOT verified: {result.reason}")
        self.stdout.write(f"{mv}: verified — {result.reason}")
        self.stdout.write(f"  image   {mv.trusted_repository}@{mv.manifest_digest}")
        self.stdout.write(f"  files   {mv.files.count()} (SHA-256 each, as signed)")
        self.stdout.write(f"  SBOM    {mv.sbom_digest or 'sha256 of the stored SBOM'}")
        self.stdout.write(f"  verdict {mv.scan_verdict}; key {mv.signature_key_id}")
