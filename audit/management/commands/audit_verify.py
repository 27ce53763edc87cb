import time

from django.core.management.base import BaseCommand, CommandError

from audit.selectors import chain_verify


class Command(BaseCommand):
    help = ("Walk the audit hash chain and check it against every signed checkpoint; print the "
            "range verified, the head hash and the checkpoints covered.")

    def handle(self, *args, **options):
        started = time.perf_counter()
        result = chain_verify()
        elapsed = time.perf_counter() - started
        if result.count == 0 and result.ok:
            self.stdout.write("The audit chain is empty: nothing to verify.")
            return
        if not result.ok:
            verified = (
                f"#{result.first_seq}–#{result.last_seq} ({result.count} events) verified, then "
                if result.count else ""
            )
            raise CommandError(f"Audit chain broken: {verified}{result.error}.")
        purged = (f"\nEvents #1–#{result.purged_through} were purged under the retention policy; "
                  "the signed checkpoint there anchors the rest." if result.purged_through else "")
        rate = result.count / elapsed if elapsed > 0 else 0
        self.stdout.write(
            f"Audit chain intact: events #{result.first_seq}–#{result.last_seq} "
            f"({result.count} events) verified.\nHead hash: {result.head_hash}\n"
            f"Signed checkpoints: {result.checkpoints_matched} matched, "
            f"{result.checkpoints_before_range} before the retained range, "
            f"{result.checkpoints_total} in all.{purged}\n"
            f"Took {elapsed:.2f} s ({rate:,.0f} events/s)."
        )
