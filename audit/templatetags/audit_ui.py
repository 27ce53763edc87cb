"""Presentation of stored audit events for people: never changes what is stored or exported.

`audit_value` turns a details value into text, `audit_target` labels an event's target
("Budget #1") and keeps the stored `app_label.model id` in a `title`."""

from __future__ import annotations

import json
import re
from typing import Any

from django import template
from django.apps import apps
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import mark_safe
from django.utils.text import capfirst

register = template.Library()

EMPTY = "—"
# Words Django's verbose names spell in lower case that people read as acronyms.
_ACRONYMS = {"api": "API", "oidc": "OIDC", "sso": "SSO", "ip": "IP", "url": "URL",
             "id": "ID", "oci": "OCI", "totp": "TOTP"}


def _compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


@register.filter
def audit_value(value: Any) -> str:
    """A details value as people read it: None and empties as "—", booleans as yes/no,
    lists joined with ", ", nested objects as compact JSON, everything else as text."""
    if value is None or value == "" or value == [] or value == {}:
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return _compact_json(value)
    if isinstance(value, list | tuple):
        return ", ".join(_compact_json(item) if isinstance(item, dict | list | tuple)
                         else audit_value(item) for item in value)
    return str(value)


def _acronyms(text: str) -> str:
    return re.sub(r"[A-Za-z]+", lambda m: _ACRONYMS.get(m.group(0).lower(), m.group(0)), text)


@register.filter
def audit_target_type(target_type: str) -> str:
    """"billing.budget" → "Budget", from the model's verbose name when the model exists;
    otherwise the stored name made readable ("old_app.gone_thing" → "Gone thing")."""
    if not target_type:
        return ""
    try:
        name = str(apps.get_model(target_type)._meta.verbose_name)
    except (LookupError, ValueError):
        name = target_type.rsplit(".", 1)[-1].replace("_", " ")
    return _acronyms(capfirst(name))


@register.filter
def audit_target_label(event) -> str:
    """"Budget #1"; "—" when the event has no target."""
    if not event.target_type:
        return EMPTY
    label = audit_target_type(event.target_type)
    return f"{label} #{event.target_id}" if event.target_id else label


@register.simple_tag
def audit_target(event) -> str:
    """The human label, with the stored `type id` in a title for compliance officers."""
    if not event.target_type:
        return EMPTY
    return format_html('<span title="{} {}">{}</span>', event.target_type, event.target_id,
                       audit_target_label(event))


@register.inclusion_tag("audit/partials/_details.html")
def audit_details(details, limit: int | None = None, truncate: int = 80) -> dict:
    """Details as key/value lines. With `limit`, the first `limit` lines show and the rest
    fold into a <details>; values longer than `truncate` are cut, the full text in a title."""
    rows = []
    for key, value in (details or {}).items():
        text = audit_value(value)
        short = text if len(text) <= truncate else text[:truncate - 1].rstrip() + "…"
        rows.append({"key": key, "text": short, "full": text if short != text else ""})
    cut = limit if limit and len(rows) > limit + 1 else len(rows)
    return {"shown": rows[:cut], "folded": rows[cut:]}


@register.filter
def audit_action(action: str) -> str:
    """An action name that may break after its dots ("billing.<wbr>budget_create"), so a
    narrow column wraps it between words instead of widening the table."""
    return mark_safe(".<wbr>".join(conditional_escape(part) for part in action.split(".")))  # noqa: S308 — parts escaped
