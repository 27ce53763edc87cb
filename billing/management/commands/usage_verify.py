from django.core.management.base import BaseCommand, CommandError

from billing.usage.selectors import usage_seals_verify


class Command(BaseCommand):
    help = "Check every sealed batch of usage records against its seal in the audit chain."

    def handle(self, *args, **options):
        checked, problems = usage_seals_verify()
        if problems:
            lines = "\n".join(f"  {p.message}" for p in problems[:50])
            raise CommandError(f"{len(problems)} of {checked} usage batches fail their seal:\n"
                               f"{lines}")
        self.stdout.write(f"{checked} sealed usage batches verified.")
