"""Every secret the portal stores encrypted — in columns of its own type
(`portal.crypto.EncryptedTextField`), and the second-factor seeds allauth keeps inside
`mfa.Authenticator.data` — reading one, telling people when it can't be read, and
re-encrypting all of them under the first key of FIELD_ENCRYPTION_KEYS.

A secret that can't be decrypted disables only the object that holds it: its reader gets
`SecretUnreadable` with a message that says what to do, the object's page shows the same
message, and the audit trail gets one `secret.unreadable` event per object and stored value,
however often it is read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from django.apps import apps
from django.db import models, transaction

import audit
from portal import crypto
from portal.crypto import EncryptedTextField

UNREADABLE_ACTION = "secret.unreadable"
ROTATED_ACTION = "secrets.rotated"
ACTOR = "system:secrets"


class SecretUnreadable(crypto.SecretUnreadable):
    """`message` says which secret of which object, and what to do about it."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def secret_fields() -> list[tuple[type[models.Model], EncryptedTextField]]:
    return [(model, f) for model in apps.get_models() for f in model._meta.local_fields
            if isinstance(f, EncryptedTextField)]


def _field(obj: models.Model, name: str) -> EncryptedTextField:
    found = obj._meta.get_field(name)
    if not isinstance(found, EncryptedTextField):
        raise TypeError(f"{obj._meta.label}.{name} is not an EncryptedTextField.")
    return found


def problem_message(secret: EncryptedTextField) -> str:
    return _problem(secret.secret_name, secret.remedy)


def _problem(secret_name: str, remedy: str) -> str:
    return (f"The stored {secret_name} can't be decrypted: it was encrypted with a key "
            "that is no longer in FIELD_ENCRYPTION_KEYS, so it is not used until this is "
            f"fixed. {remedy}, or put the old key back in FIELD_ENCRYPTION_KEYS (after "
            "the current first key) and restart the portal.")


def _fingerprint(token: str) -> str:
    # Of the ciphertext, which reveals nothing: tells one stored value from the next.
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def reveal(obj: models.Model, name: str) -> str:
    """The plaintext of `obj.<name>` ("" when empty). Raises SecretUnreadable (audited once
    per object and stored value) when no configured key decrypts it."""
    secret = _field(obj, name)
    token = getattr(obj, name)
    try:
        return crypto.decrypt(token)
    except crypto.SecretUnreadable:
        report_unreadable(obj, field=secret.name, secret_name=secret.secret_name, token=token)
        raise SecretUnreadable(problem_message(secret)) from None


def problems(obj: models.Model) -> list[str]:
    """What people should be told about `obj`'s unreadable secrets (nothing is recorded)."""
    found = []
    for f in obj._meta.local_fields:
        if isinstance(f, EncryptedTextField):
            try:
                crypto.decrypt(getattr(obj, f.attname))
            except crypto.SecretUnreadable:
                found.append(problem_message(f))
    return found


def report_unreadable(obj: models.Model, *, field: str, secret_name: str, token: str,
                      about: str = "") -> None:
    """One audit event per object and stored value, however many readers hit it (gateway
    workers reload concurrently: the object's row lock orders them). `about` names the
    object where its `str()` doesn't say whose it is."""
    fingerprint = _fingerprint(token)
    from audit.models import AuditEvent

    with transaction.atomic():
        list(type(obj)._base_manager.select_for_update().filter(pk=obj.pk).values_list("pk"))
        if AuditEvent.objects.filter(action=UNREADABLE_ACTION, target_type=obj._meta.label_lower,
                                     target_id=str(obj.pk),
                                     details__fingerprint=fingerprint).exists():
            return
        audit.record(action=UNREADABLE_ACTION, actor=ACTOR, tenant=_tenant_of(obj), target=obj,
                     details={"object": (about or str(obj))[:200], "field": field,
                              "secret": secret_name, "fingerprint": fingerprint})


def _tenant_of(obj: models.Model):
    return getattr(obj, "tenant", None) if hasattr(obj, "tenant_id") else None


@dataclass
class RotationReport:
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    unreadable: list[dict[str, str]] = field(default_factory=list)

    def total(self, outcome: str) -> int:
        return sum(c[outcome] for c in self.counts.values())


def secrets_rotate(*, actor) -> RotationReport:
    """Re-encrypt every stored secret under the first key of FIELD_ENCRYPTION_KEYS.

    That is every EncryptedTextField and every second-factor seed (`mfa_*` below).
    Idempotent: values already under the first key are left alone, so a second run writes
    nothing. A value no key decrypts is counted, reported (and audited once) and skipped; the
    run goes on. Each value is swapped with a compare-and-set update, so a secret edited
    meanwhile is not overwritten. One `secrets.rotated` event records the counts.
    """
    report = RotationReport()
    for model, secret in secret_fields():
        label = f"{model._meta.label_lower}.{secret.name}"
        counts = report.counts.setdefault(label, {"rotated": 0, "current": 0, "unreadable": 0})
        rows = (model._base_manager.exclude(**{secret.attname: ""}).order_by("pk")
                .values_list("pk", secret.attname))
        for pk, token in rows.iterator():
            if crypto.is_current(token):
                counts["current"] += 1
                continue
            try:
                rotated = crypto.rotate(token)
            except crypto.SecretUnreadable:
                counts["unreadable"] += 1
                obj = model._base_manager.get(pk=pk)
                report_unreadable(obj, field=secret.name, secret_name=secret.secret_name,
                                  token=token)
                report.unreadable.append({"object": f"{model._meta.verbose_name} {obj} (#{pk})",
                                          "target": f"{model._meta.label_lower}:{pk}",
                                          "problem": problem_message(secret)})
                continue
            swapped = model._base_manager.filter(pk=pk, **{secret.attname: token}).update(
                **{secret.attname: rotated})
            counts["rotated" if swapped else "current"] += 1
    _rotate_second_factor_seeds(report)
    with transaction.atomic():
        audit.record(action=ROTATED_ACTION, actor=actor, details={
            "rotated": report.total("rotated"), "current": report.total("current"),
            "unreadable": report.total("unreadable"), "fields": report.counts,
            "unreadable_objects": [u["target"] for u in report.unreadable[:100]]})
    return report


# --- Second-factor seeds --------------------------------------------------------------------
#
# allauth keeps an authenticator app's secret and the seed of a person's recovery codes in the
# JSON column `mfa.Authenticator.data`, written and read through its MFA adapter's `encrypt`
# and `decrypt` hooks: the portal's adapter (`tenants.mfa.MFAAdapter`) calls `seal` and
# `unseal`. A sealed value is SEALED_PREFIX + a token of `portal.crypto`; the prefix tells it
# from a seed allauth wrote in plain text before (migration tenants 0005 seals those) without
# trying keys, so sealing is never done twice. A value without the prefix is never used as a
# seed: whoever can write to the database must not be able to plant a seed they know.

SEALED_PREFIX = "fernet:"

# Authenticator type → the keys of `data` holding a sealed string, or a list of them
# (`migrated_codes`: recovery codes allauth carried over from django-otp, one value each).
MFA_SEALED_KEYS: dict[str, tuple[str, ...]] = {
    "totp": ("secret",), "recovery_codes": ("seed", "migrated_codes")}
MFA_SECRET_NAMES = {"totp": "authenticator app secret", "recovery_codes": "recovery-code seed"}
MFA_REMEDY = ("Until then its owner signs in with another second factor, or an MSP admin "
              "resets their second factor (Reset second factor on a tenant's members, or "
              "`python manage.py second_factor_reset <e-mail>`)")


def seal(plaintext: str) -> str:
    return SEALED_PREFIX + crypto.encrypt(plaintext)


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def unseal(value: str) -> str:
    """The plaintext of a sealed value. Raises `crypto.SecretUnreadable` when no key decrypts
    it, or when it is not sealed at all; the caller knows whose it is and reports it
    (`mfa_unreadable`)."""
    if not is_sealed(value):
        raise crypto.SecretUnreadable("This second-factor seed is not sealed.")
    return crypto.decrypt(value[len(SEALED_PREFIX):])


def _is_current(value: str) -> bool:
    return is_sealed(value) and crypto.is_current(value[len(SEALED_PREFIX):])


def _mfa_values(kind: str, data: dict) -> list[tuple[str, str]]:
    """(key, value) for every sealed (or to-be-sealed) value in an authenticator's data."""
    found = []
    for key in MFA_SEALED_KEYS.get(kind, ()):
        value = data.get(key)
        for item in (value if isinstance(value, list) else [value]):
            if isinstance(item, str):
                found.append((key, item))
    return found


def _mfa_map(kind: str, data: dict, change) -> dict:
    """A copy of `data` with `change` applied to every value at the sealed keys."""
    changed = dict(data)
    for key in MFA_SEALED_KEYS.get(kind, ()):
        value = data.get(key)
        if isinstance(value, list):
            changed[key] = [change(item) if isinstance(item, str) else item for item in value]
        elif isinstance(value, str):
            changed[key] = change(value)
    return changed


def _whose(authenticator) -> str:
    return f"{authenticator.get_type_display()} of {authenticator.user.email}"


def mfa_problem(authenticator) -> str:
    """For operators (secrets_rotate): what is wrong with this authenticator and what to do."""
    return _problem(f"{MFA_SECRET_NAMES[authenticator.type]} of {authenticator.user.email}",
                    MFA_REMEDY)


def mfa_unreadable(user) -> list:
    """`user`'s authenticators whose seed no configured key decrypts (or that is not sealed);
    each is audited once per authenticator and stored value, however often it is tried."""
    from allauth.mfa.models import Authenticator

    return [authenticator for authenticator in
            Authenticator.objects.filter(user=user, type__in=MFA_SEALED_KEYS)
            .select_related("user").order_by("pk")
            if _reported_unreadable(authenticator)]


def _reported_unreadable(authenticator) -> bool:
    for key, value in _mfa_values(authenticator.type, authenticator.data):
        try:
            unseal(value)
        except crypto.SecretUnreadable:
            report_unreadable(authenticator, field=f"data.{key}", token=value,
                              secret_name=MFA_SECRET_NAMES[authenticator.type],
                              about=_whose(authenticator))
            return True
    return False


def _rotate_second_factor_seeds(report: RotationReport) -> None:
    from allauth.mfa.models import Authenticator

    for kind in MFA_SEALED_KEYS:
        counts = report.counts.setdefault(f"mfa.authenticator.{kind}",
                                          {"rotated": 0, "current": 0, "unreadable": 0})
        rows = Authenticator.objects.filter(type=kind).select_related("user").order_by("pk")
        for authenticator in rows.iterator():
            data = authenticator.data
            values = _mfa_values(kind, data)
            if all(_is_current(value) for _key, value in values):
                counts["current"] += 1
                continue
            try:
                rotated = _mfa_map(kind, data, lambda value: seal(unseal(value)))
            except crypto.SecretUnreadable:
                counts["unreadable"] += 1
                _reported_unreadable(authenticator)
                report.unreadable.append({
                    "object": f"{_whose(authenticator)} (#{authenticator.pk})",
                    "target": f"mfa.authenticator:{authenticator.pk}",
                    "problem": mfa_problem(authenticator)})
                continue
            # Compare-and-set on the whole document: a recovery code used meanwhile (its
            # used_mask changed) is not undone.
            swapped = Authenticator.objects.filter(pk=authenticator.pk, data=data).update(
                data=rotated)
            counts["rotated" if swapped else "current"] += 1


def mfa_seal_plaintext(authenticator_model) -> int:
    """Seal every seed still stored in plain text (the forward data migration; values
    already sealed are left alone, so it may run again). Returns how many authenticators
    changed."""
    changed = 0
    for authenticator in authenticator_model.objects.filter(
            type__in=MFA_SEALED_KEYS).order_by("pk").iterator():
        data = authenticator.data
        sealed = _mfa_map(authenticator.type, data,
                          lambda value: value if is_sealed(value) else seal(value))
        if sealed != data:
            changed += authenticator_model.objects.filter(pk=authenticator.pk, data=data).update(
                data=sealed)
    return changed


def mfa_unseal_all(authenticator_model) -> int:
    """Back to plain text, for a portal rolled back to before sealing (the reverse data
    migration). A value no key decrypts stays as it is."""
    changed = 0
    for authenticator in authenticator_model.objects.filter(
            type__in=MFA_SEALED_KEYS).order_by("pk").iterator():
        data = authenticator.data

        def readable(value: str) -> str:
            try:
                return unseal(value)
            except crypto.SecretUnreadable:
                return value

        plain = _mfa_map(authenticator.type, data, readable)
        if plain != data:
            changed += authenticator_model.objects.filter(pk=authenticator.pk, data=data).update(
                data=plain)
    return changed
