"""Seal the authenticator-app secrets and recovery-code seeds allauth stored in plain text
before the portal's MFA adapter sealed them (see `portal.stored_secrets`). Values already
sealed are left alone, so running it again changes nothing; the reverse unseals them for a
portal rolled back to before this."""

from django.db import migrations

from portal import stored_secrets


def seal(apps, schema_editor):
    stored_secrets.mfa_seal_plaintext(apps.get_model("mfa", "Authenticator"))


def unseal(apps, schema_editor):
    stored_secrets.mfa_unseal_all(apps.get_model("mfa", "Authenticator"))


class Migration(migrations.Migration):

    dependencies = [
        ("tenants", "0004_display_name_validators"),
        ("mfa", "0003_authenticator_type_uniq"),
    ]

    operations = [migrations.RunPython(seal, unseal, elidable=False)]
