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
