from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit.bundle_verify import export_lines, load_tsa_trust, verify_bundle
from audit.timestamps import TimestampError
from portal import signing
from portal.management.public_key import add_public_key_argument, public_key_option


class Command(BaseCommand):
    help = ("Verify an evidence bundle: the archive and manifest signatures, every file's "
            "SHA-256, the audit extract's chain against the signed checkpoints, and the RFC "
            "3161 timestamps of the manifest and checkpoints, and the OMS model signatures. "
            "Exits non-zero on any mismatch. "
            "Offline without Django: python -m audit.bundle_verify.")

    def add_arguments(self, parser):
        parser.add_argument("bundle")
        add_public_key_argument(parser)
        parser.add_argument("--tsa-ca", default="",
                            help="the time-stamping authority's certificate(s) to trust (PEM); "
                                 "default: TSA_CA_FILE, else those carried in the bundle")
        parser.add_argument("--model-signing-key", default="",
                            help="the model-signing public key (PEM) the OMS model signatures "
                                 "must verify with; default: the one carried in the bundle")
        parser.add_argument("--export-timestamps", default="", metavar="DIR",
                            help="also write each timestamp and the bytes it covers to DIR, "
                                 "for openssl ts -verify")

    def handle(self, *args, bundle, public_key, tsa_ca, export_timestamps, model_signing_key,
               **options):
        if not Path(bundle).is_file():
            raise CommandError(f"{bundle}: no such file.")
        key = public_key_option(public_key)
        tsa_ca = tsa_ca or settings.TSA_CA_FILE
        try:
            tsa_trust = load_tsa_trust(tsa_ca) if tsa_ca else None
        except (OSError, TimestampError) as exc:
            raise CommandError(f"Cannot use the TSA certificates: {exc}") from None
        try:
            model_key = Path(model_signing_key).read_bytes() if model_signing_key else None
        except OSError as exc:
            raise CommandError(f"Cannot read the model-signing key: {exc}") from None
        check = verify_bundle(bundle, key, tsa_trust=tsa_trust, model_signing_key=model_key)
        for fact in check.facts:
            self.stdout.write(f"ok: {fact}")
        for note in check.notes:
            self.stdout.write(f"note: {note}")
        if not check.ok:
            raise CommandError("Bundle NOT verified:\n  " + "\n  ".join(check.problems))
        if export_timestamps:
            self.stdout.write("\n".join(export_lines(bundle, export_timestamps)))
        self.stdout.write(f"Bundle verified with key {signing.key_id(key)}.")
