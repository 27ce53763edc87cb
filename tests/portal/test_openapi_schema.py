"""The OpenAPI schema is complete: drf-spectacular resolves every view, serializer and
authentication class without a warning, and the result validates against the OpenAPI spec."""

import yaml
from django.core.management import call_command


def test_the_schema_generates_without_warnings_and_validates(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    schemes = schema["components"]["securitySchemes"]
    assert schemes["oidcBearer"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                     "description": schemes["oidcBearer"]["description"]}
    # Every action of the deployments app is in it (issue: "REST API for every action").
    paths = set(schema["paths"])
    assert {"/api/clusters/{id}/", "/api/deployments/{id}/promote/",
            "/api/deployments/{id}/endpoint/", "/api/deployments/external/"} <= paths


def test_the_schema_documents_v1_quota_and_its_headers(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    operation = schema["paths"]["/v1/quota"]["get"]
    assert operation["security"] == [{"gatewayApiKey": []}]
    ok = operation["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Quota"}
    assert {"x-budget-remaining-tokens", "x-budget-remaining-amount", "x-budget-reset"} <= set(
        ok["headers"])
    quota = schema["components"]["schemas"]["Quota"]
    assert set(quota["required"]) == {"object", "key", "tenant", "budget", "budgets"}
    assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OpenAIError"}
