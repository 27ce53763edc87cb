"""The portal's side of allauth's two-factor authentication: seeds sealed at rest, and what a
person is told when one of theirs can't be decrypted.

An authenticator whose seed no key in FIELD_ENCRYPTION_KEYS decrypts (the key was removed
too early, or lost) is unusable, and only that one: the sign-in takes the person's other
second factors (recovery codes, security keys) and says why the code was not accepted; an
account page that would show it answers with the same explanation instead of an error; the
audit trail gets one `secret.unreadable` event per authenticator and stored value. An MSP admin
resets the person's second factor (`tenants.services.second_factor_reset`), and they set up a
new one; or the operator puts the old key back.
"""

from __future__ import annotations

from allauth.mfa.adapter import DefaultMFAAdapter

from portal import crypto, stored_secrets


class SecondFactorUnreadable(Exception):
    """allauth asked for a seed that can't be decrypted. Which authenticator it was is not
    known here (allauth passes only the value): handlers look the person's up with
    `portal.stored_secrets.mfa_unreadable`."""


_MESSAGES = {
    "totp": "Your authenticator app can't be used: the portal can no longer decrypt its "
            "secret. Sign in with a recovery code or a security key instead, or ask an MSP "
            "admin to reset your second factor.",
    "recovery_codes": "Your recovery codes can't be used: the portal can no longer decrypt "
                      "them. Use your authenticator app or a security key instead, or ask an "
                      "MSP admin to reset your second factor.",
}

GENERAL_MESSAGE = ("One of your second factors can't be used: the portal can no longer decrypt "
                   "its secret. Use another one, or ask an MSP admin to reset your second "
                   "factor.")


class MFAAdapter(DefaultMFAAdapter):
    """allauth stores the seeds its adapter's `encrypt` returns: sealed under the first key
    of FIELD_ENCRYPTION_KEYS (`portal.stored_secrets.seal`) instead of plain text."""

    def encrypt(self, text: str) -> str:
        return stored_secrets.seal(text)

    def decrypt(self, encrypted_text: str) -> str:
        try:
            return stored_secrets.unseal(encrypted_text)
        except crypto.SecretUnreadable:
            raise SecondFactorUnreadable from None


def message_for(authenticator) -> str:
    return _MESSAGES[authenticator.type]
