"""Every secret the portal stores encrypted, found through its field type
(`portal.crypto.EncryptedTextField`): reading one, telling people when it can't be read, and
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
    return (f"The stored {secret.secret_name} can't be decrypted: it was encrypted with a key "
            "that is no longer in FIELD_ENCRYPTION_KEYS, so it is not used until this is "
            f"fixed. {secret.remedy}, or put the old key back in FIELD_ENCRYPTION_KEYS (after "
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
        report_unreadable(obj, secret, token)
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


def report_unreadable(obj: models.Model, secret: EncryptedTextField, token: str) -> None:
    """One audit event per object and stored value, however many readers hit it (gateway
    workers reload concurrently: the object's row lock orders them)."""
    fingerprint = _fingerprint(token)
    from audit.models import AuditEvent

    with transaction.atomic():
        list(type(obj)._base_manager.select_for_update().filter(pk=obj.pk).values_list("pk"))
        if AuditEvent.objects.filter(action=UNREADABLE_ACTION, target_type=obj._meta.label_lower,
                                     target_id=str(obj.pk),
                                     details__fingerprint=fingerprint).exists():
            return
        audit.record(action=UNREADABLE_ACTION, actor=ACTOR, tenant=_tenant_of(obj), target=obj,
                     details={"object": str(obj)[:200], "field": secret.name,
                              "secret": secret.secret_name, "fingerprint": fingerprint})


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
                report_unreadable(obj, secret, token)
                report.unreadable.append({"object": f"{model._meta.verbose_name} {obj} (#{pk})",
                                          "target": f"{model._meta.label_lower}:{pk}",
                                          "problem": problem_message(secret)})
                continue
            swapped = model._base_manager.filter(pk=pk, **{secret.attname: token}).update(
                **{secret.attname: rotated})
            counts["rotated" if swapped else "current"] += 1
    with transaction.atomic():
        audit.record(action=ROTATED_ACTION, actor=actor, details={
            "rotated": report.total("rotated"), "current": report.total("current"),
            "unreadable": report.total("unreadable"), "fields": report.counts,
            "unreadable_objects": [u["target"] for u in report.unreadable[:100]]})
    return report
