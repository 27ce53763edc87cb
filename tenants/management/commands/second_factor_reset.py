from django.core.management.base import BaseCommand, CommandError

from portal.api import ApplicationError
from tenants import selectors, services


class Command(BaseCommand):
    help = ("Remove every second factor of a person (authenticator app, recovery codes, "
            "security keys) so they can set up a new one: for a lost authenticator, or one "
            "whose secret can't be decrypted any more. Audited.")

    def add_arguments(self, parser):
        parser.add_argument("email", help="the person's e-mail address")

    def handle(self, *args, email: str, **options):
        user = selectors.user_by_email(email)
        if user is None:
            raise CommandError(f"No account with the e-mail address {email!r}.")
        try:
            removed = services.second_factor_reset(actor="system:second_factor_reset",
                                                   user=user)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(self.style.SUCCESS(
            f"Removed the second factors of {user.email} ({', '.join(removed)}). They set up "
            "a new one under Two-factor authentication (MSP admins and staff must, at their "
            "next sign-in)."))
