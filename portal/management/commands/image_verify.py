from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from portal import signing
from portal.image_attestation import verify_archive


class Command(BaseCommand):
    help = ("Verify the portal's OCI image archive: every blob's digest, the CycloneDX SBOM "
            "bound to the image's manifest digest, and the platform key's signature.")

    def add_arguments(self, parser):
        parser.add_argument("archive", type=Path, help="the OCI archive (var/image/*.oci.tar)")
        parser.add_argument("--tag", help="which image of the archive (when it holds several)")
        parser.add_argument("--public-key", type=Path,
                            help="the platform's public key (PEM); default: the configured "
                                 "platform key's")

    def handle(self, *args, **options):
        try:
            if options["public_key"]:
                public_key = signing.load_public_key(options["public_key"].read_bytes())
            else:
                public_key = signing.platform_public_key()
        except (OSError, signing.SigningKeyError) as exc:
            raise CommandError(f"The public key cannot be used: {exc}.") from exc
        result = verify_archive(options["archive"], public_key=public_key, tag=options["tag"])
        for line in result.checked:
            self.stdout.write(f"ok: {line}")
        if not result:
            raise CommandError(f"Image not verified: {result.reason}.")
        self.stdout.write(f"Image verified: {result.reason}.")
