from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from models_catalog.provenance_verify import verify_envelope
from portal import signing
from portal.management.public_key import add_public_key_argument, public_key_option


class Command(BaseCommand):
    help = ("Verify an exported provenance answer (a DSSE envelope signed with the platform "
            "key) and print what it says. Exits non-zero when it does not verify. Offline "
            "without Django: python -m models_catalog.provenance_verify.")

    def add_arguments(self, parser):
        parser.add_argument("answer")
        add_public_key_argument(parser)

    def handle(self, *args, answer, public_key, **options):
        try:
            data = Path(answer).read_bytes()
        except OSError as exc:
            raise CommandError(f"{answer}: {exc.strerror}.") from None
        key = public_key_option(public_key)
        check = verify_envelope(data, key)
        if not check.ok:
            raise CommandError("Provenance answer NOT verified:\n  "
                               + "\n  ".join(check.problems))
        for line in check.summary():
            self.stdout.write(f"ok: {line}")
        self.stdout.write(f"Provenance answer verified with key {signing.key_id(key)}.")
