"""How the explorer shows stored values to people (the stored values never change)."""

from types import SimpleNamespace

import pytest
from django.template import Context, Template

from audit.templatetags.audit_ui import (
    audit_details,
    audit_target,
    audit_target_label,
    audit_target_type,
    audit_value,
)


@pytest.mark.parametrize("value,expected", [
    (None, "—"), ("", "—"), ([], "—"), ({}, "—"),
    (True, "yes"), (False, "no"),
    (0, "0"), (3.5, "3.5"), ("password", "password"),
    (["read", "write"], "read, write"),
    ([None, True, 2], "—, yes, 2"),
    ({"b": 1, "a": [1, 2]}, '{"a": [1, 2], "b": 1}'),
    ([{"x": None}], '{"x": null}'),
    ({"amount": ["10.00", "20.00"]}, '{"amount": ["10.00", "20.00"]}'),
])
def test_audit_value_reads_like_text_not_python(value, expected):
    assert audit_value(value) == expected


def test_audit_value_is_one_filter_in_templates():
    out = Template("{% load audit_ui %}{{ v|audit_value }}").render(Context({"v": None}))
    assert out == "—"


@pytest.mark.parametrize("stored,expected", [
    ("billing.budget", "Budget"),
    ("tenants.user", "User"),
    ("tenants.tenant", "Tenant"),
    ("models_catalog.modelversion", "Model version"),
    ("deployments.deployment", "Deployment"),
    ("gone_app.retired_thing", "Retired thing"),  # a model that no longer exists
    ("notamodel", "Notamodel"),
    ("", ""),
])
def test_target_type_from_the_models_verbose_name(stored, expected):
    assert audit_target_type(stored) == expected


def test_api_key_is_spelt_as_people_write_it():
    from django.apps import apps

    labels = [m._meta.label_lower for m in apps.get_models() if m.__name__ == "ApiKey"]
    assert labels and audit_target_type(labels[0]) == "API key"


def test_target_label_keeps_the_stored_value_in_a_title():
    event = SimpleNamespace(target_type="billing.budget", target_id="1")
    assert audit_target_label(event) == "Budget #1"
    assert audit_target(event) == '<span title="billing.budget 1">Budget #1</span>'
    assert audit_target(SimpleNamespace(target_type="", target_id="")) == "—"


def test_details_fold_and_truncate():
    details = {f"k{i}": i for i in range(10)} | {"long": "x" * 200}
    rows = audit_details(details, limit=6)
    assert [r["key"] for r in rows["shown"]] == [f"k{i}" for i in range(6)]
    assert len(rows["folded"]) == 5
    long = rows["folded"][-1]
    assert len(long["text"]) == 80 and long["text"].endswith("…") and long["full"] == "x" * 200
    # One extra line is shown rather than folded alone.
    assert len(audit_details({f"k{i}": i for i in range(7)}, limit=6)["shown"]) == 7
    assert audit_details({}, limit=6) == {"shown": [], "folded": []}


def test_action_may_break_after_dots_and_is_escaped():
    from audit.templatetags.audit_ui import audit_action

    assert audit_action("billing.budget_create") == "billing.<wbr>budget_create"
    assert audit_action("x.<b>") == "x.<wbr>&lt;b&gt;"
