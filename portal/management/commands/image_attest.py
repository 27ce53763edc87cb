from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from portal import signing
from portal.image_attestation import AttestationError, attest_layout


class Command(BaseCommand):
    help = ("Add the SBOM and the platform-signed release statement of an image to its OCI "
            "image layout (run by `make image`).")

    def add_arguments(self, parser):
        parser.add_argument("--layout", required=True, type=Path, help="OCI image layout")
        parser.add_argument("--tag", required=True, help="the image's tag in the layout")
        parser.add_argument("--rootfs", required=True, type=Path,
                            help="the image's root filesystem, unpacked")
        parser.add_argument("--venv", default="/opt/portal/venv",
                            help="the virtual environment's path inside the image")
        parser.add_argument("--image-name", default="sovereign-portal")
        parser.add_argument("--app-version", required=True)

    def handle(self, *args, **options):
        rootfs: Path = options["rootfs"]
        found = sorted((rootfs / options["venv"].lstrip("/")).glob("lib/python3*/site-packages"))
        if len(found) != 1:
            raise CommandError(f"No single site-packages in {options['venv']} under {rootfs}.")
        try:
            key = signing.platform_key()
        except signing.SigningKeyError as exc:
            raise CommandError(f"The platform signing key cannot be used: {exc}.") from exc
        try:
            result = attest_layout(options["layout"], tag=options["tag"],
                                   image_name=options["image_name"], rootfs=rootfs,
                                   site_packages=found[0],
                                   app_version=options["app_version"], private_key=key)
        except AttestationError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Attested {options['image_name']}:{options['tag']} "
                          f"({result.manifest_digest}): SBOM {result.sbom_digest} with "
                          f"{result.components} components, signed by key {result.key_id}.")
