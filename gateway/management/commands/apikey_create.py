import re
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError

from gateway import services
from portal.api import ApplicationError
from tenants.selectors import tenant_by_slug, user_by_email


def _expiry(value: str) -> datetime:
    """`30d`, `12h` or an ISO date/time (UTC when no offset is given)."""
    match = re.fullmatch(r"(\d+)([dh])", value)
    if match:
        amount, unit = int(match[1]), match[2]
        return datetime.now(UTC) + (timedelta(days=amount) if unit == "d"
                                    else timedelta(hours=amount))
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--expires {value!r}: use 30d, 12h or an ISO date such as "
                           "2027-01-31.") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Create an API key for a tenant and print its secret (shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--models", default="", help="comma-separated model slugs")
        parser.add_argument("--expires", help="30d, 12h or an ISO date (UTC)")
        parser.add_argument("--rpm", type=int, help="requests per minute")
        parser.add_argument("--tpm", type=int, help="tokens per minute")
        parser.add_argument("--owner", help="e-mail of the member who owns the key")

    def handle(self, *args, **options):
        tenant = tenant_by_slug(options["tenant"])
        if tenant is None:
            raise CommandError(f"No tenant {options['tenant']!r}.")
        models = [s.strip() for s in options["models"].split(",") if s.strip()]
        owner = None
        if options["owner"]:
            owner = user_by_email(options["owner"])
            if owner is None:
                raise CommandError(f"No user {options['owner']!r}.")
        try:
            _key, token = services.apikey_create(
                actor="system:apikey_create", tenant=tenant, name=options["name"], owner=owner,
                expires_at=_expiry(options["expires"]) if options["expires"] else None,
                allowed_models=models, rpm_limit=options["rpm"], tpm_limit=options["tpm"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(token)
