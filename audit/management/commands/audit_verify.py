from django.core.management.base import BaseCommand, CommandError

from audit.selectors import chain_verify


class Command(BaseCommand):
    help = "Walk the audit hash chain; print the range verified and the head hash."

    def handle(self, *args, **options):
        result = chain_verify()
        if result.count == 0 and result.ok:
            self.stdout.write("The audit chain is empty: nothing to verify.")
            return
        if not result.ok:
            verified = (
                f"#{result.first_seq}–#{result.last_seq} ({result.count} events) verified, then "
                if result.count else ""
            )
            raise CommandError(f"Audit chain broken: {verified}{result.error}.")
        self.stdout.write(
            f"Audit chain intact: events #{result.first_seq}–#{result.last_seq} "
            f"({result.count} events) verified.\nHead hash: {result.head_hash}"
        )
