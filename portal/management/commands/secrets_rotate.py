from django.core.management.base import BaseCommand, CommandError

from portal.stored_secrets import secrets_rotate


class Command(BaseCommand):
    help = ("Re-encrypt every stored secret (upstream API keys, cluster credentials, webhook "
            "signing secrets, authenticator-app secrets and recovery-code seeds) under the "
            "first key of FIELD_ENCRYPTION_KEYS. Safe to run again; exits with status 1 if "
            "some secret could not be decrypted.")

    def handle(self, *args, **options):
        report = secrets_rotate(actor="system:secrets_rotate")
        for label, counts in report.counts.items():
            self.stdout.write(f"{label}: {counts['rotated']} re-encrypted, {counts['current']} "
                              f"already under the first key, {counts['unreadable']} unreadable")
        self.stdout.write(f"Total: {report.total('rotated')} re-encrypted, "
                          f"{report.total('current')} already current, "
                          f"{report.total('unreadable')} unreadable.")
        if report.unreadable:
            for item in report.unreadable:
                self.stderr.write(f"{item['object']}: {item['problem']}")
            raise CommandError(
                f"{len(report.unreadable)} stored secret(s) could not be decrypted with any key "
                "in FIELD_ENCRYPTION_KEYS; they were left as they are (see above). Keep the "
                "old keys configured until each is entered again or its key is restored.")
        self.stdout.write(self.style.SUCCESS(
            "Every stored secret is under the first key: the keys after it may now be removed "
            "from FIELD_ENCRYPTION_KEYS, and FIELD_ENCRYPTION_LEGACY_DERIVED_KEY turned off."))
