import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit import tsa
from audit.selectors import (
    chain_verify,
    checkpoints_awaiting_timestamp,
    timestamped_checkpoint_count,
    timestamped_checkpoints,
)
from audit.timestamps import TimestampError, trust_from_pem, verify_checkpoint_stamps


def _seqs(seqs: list[int], shown: int = 10) -> str:
    text = ", ".join(f"#{seq}" for seq in seqs[:shown])
    return text + (f" and {len(seqs) - shown} more" if len(seqs) > shown else "")


class Command(BaseCommand):
    help = ("Walk the audit hash chain and check it against every signed checkpoint; print the "
            "range verified, the head hash and the checkpoints covered. Then verify every "
            "checkpoint's RFC 3161 timestamp against TSA_CA_FILE (or --tsa-ca) and list those "
            "not yet timestamped.")

    def add_arguments(self, parser):
        parser.add_argument("--tsa-ca", default="",
                            help="PEM certificate(s) of the time-stamping authority to trust "
                                 "(default: TSA_CA_FILE)")
        parser.add_argument("--no-timestamps", action="store_true",
                            help="check the chain and signatures only")

    def handle(self, *args, tsa_ca, no_timestamps, **options):
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
        if not no_timestamps:
            self._timestamps(tsa_ca)

    def _timestamps(self, tsa_ca: str) -> None:
        try:
            trust = (trust_from_pem(Path(tsa_ca).read_bytes(), source=f"--tsa-ca {tsa_ca}",
                                    policy=settings.TSA_POLICY_OID) if tsa_ca else tsa.trust())
        except (OSError, TimestampError) as exc:
            raise CommandError(f"Cannot use the TSA certificates: {exc}") from None
        awaiting = checkpoints_awaiting_timestamp()
        if trust is None:
            stamped = timestamped_checkpoint_count()
            if stamped:
                self.stdout.write(f"Timestamps: {stamped} checkpoints carry one, not checked: "
                                  "set TSA_CA_FILE or pass --tsa-ca.")
        else:
            report = verify_checkpoint_stamps(timestamped_checkpoints(), trust)
            if not report.ok:
                raise CommandError(f"Checkpoint timestamps: {report.error}.")
            if report.verified:
                self.stdout.write(f"Timestamps: {report.summary()}.\n"
                                  f"Trusted TSA: {trust.describe()}.")
            earlier = len(report.unstamped) - len(awaiting)
            if earlier > 0:
                self.stdout.write(f"{earlier} checkpoints have no timestamp: they were made "
                                  "while timestamps were off.")
        if awaiting:
            self.stdout.write(
                f"Not yet timestamped: {_seqs(awaiting)} ({len(awaiting)}): the TSA has not "
                "answered yet; beat retries with backoff (see the Checkpoints page).")
