from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.bundle_verify import verify_bundle
from portal import signing


class Command(BaseCommand):
    help = ("Verify an evidence bundle: the archive and manifest signatures, every file's "
            "SHA-256, and the audit extract's chain against the signed checkpoints. Exits "
            "non-zero on any mismatch. Offline without Django: python -m audit.bundle_verify.")

    def add_arguments(self, parser):
        parser.add_argument("bundle")
        parser.add_argument("--public-key", default="",
                            help="the platform's public key (PEM); default: this portal's key")

    def handle(self, *args, bundle, public_key, **options):
        if not Path(bundle).is_file():
            raise CommandError(f"{bundle}: no such file.")
        try:
            key = (signing.load_public_key(Path(public_key).read_bytes()) if public_key
                   else signing.platform_public_key())
        except (OSError, signing.SigningKeyError) as exc:
            raise CommandError(f"Cannot use the public key: {exc}") from None
        check = verify_bundle(bundle, key)
        for fact in check.facts:
            self.stdout.write(f"ok: {fact}")
        if not check.ok:
            raise CommandError("Bundle NOT verified:\n  " + "\n  ".join(check.problems))
        self.stdout.write(f"Bundle verified with key {signing.key_id(key)}.")
