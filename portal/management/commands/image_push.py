from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from models_catalog import registry as oci
from portal import signing
from portal.image_attestation import AttestationError, push_archive, verify_archive


class Command(BaseCommand):
    help = ("Verify the portal's OCI image archive, then push the image, its SBOM and its "
            "signature to the registry at REGISTRY_URL.")

    def add_arguments(self, parser):
        parser.add_argument("archive", type=Path)
        parser.add_argument("--repository", required=True,
                            help="repository in the registry, e.g. platform/sovereign-portal")
        parser.add_argument("--tag", help="which image of the archive (when it holds several)")

    def handle(self, *args, **options):
        try:
            oci.check_repository(options["repository"])
        except oci.RegistryError as exc:
            raise CommandError(str(exc)) from exc
        verification = verify_archive(options["archive"],
                                      public_key=signing.platform_public_key(),
                                      tag=options["tag"])
        if not verification:
            raise CommandError(f"Not pushed: the archive does not verify "
                               f"({verification.reason}).")
        try:
            digest = push_archive(options["archive"], client=oci.registry_client(),
                                  repository=options["repository"], tag=verification.tag)
        except (oci.RegistryError, AttestationError) as exc:
            raise CommandError(f"Push failed: {exc}") from exc
        host = oci.registry_host()
        self.stdout.write(f"Pushed {host}/{options['repository']}:{verification.tag} "
                          f"({digest}) with its SBOM and signature.")
