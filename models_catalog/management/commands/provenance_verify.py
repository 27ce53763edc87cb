from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from models_catalog.provenance_verify import verify_envelope
from portal import signing


class Command(BaseCommand):
    help = ("Verify an exported provenance answer (a DSSE envelope signed with the platform "
            "key) and print what it says. Exits non-zero when it does not verify. Offline "
            "without Django: python -m models_catalog.provenance_verify.")

    def add_arguments(self, parser):
        parser.add_argument("answer")
        parser.add_argument("--public-key", default="",
                            help="the platform's public key (PEM); default: this portal's key")

    def handle(self, *args, answer, public_key, **options):
        try:
            data = Path(answer).read_bytes()
        except OSError as exc:
            raise CommandError(f"{answer}: {exc.strerror}.") from None
        try:
            key = (signing.load_public_key(Path(public_key).read_bytes()) if public_key
                   else signing.platform_public_key())
        except (OSError, signing.SigningKeyError) as exc:
            raise CommandError(f"Cannot use the public key: {exc}") from None
        check = verify_envelope(data, key)
        if not check.ok:
            raise CommandError("Provenance answer NOT verified:\n  "
                               + "\n  ".join(check.problems))
        for line in check.summary():
            self.stdout.write(f"ok: {line}")
        self.stdout.write(f"Provenance answer verified with key {signing.key_id(key)}.")
