"""`GET /v1/quota` in the OpenAPI schema.

`/v1/*` is served by the gateway's ASGI app, not by DRF views, so drf-spectacular can't find
it: this post-processing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]) adds the path,
its answers (OpenAI's error shape for /v1) and the API-key security scheme.
"""

from __future__ import annotations

_WINDOW = {
    "type": "object",
    "description": "One rate-limit window (the current calendar minute).",
    "properties": {
        "limit": {"type": "integer", "nullable": True,
                  "description": "Per minute; null when no limit is set."},
        "used": {"type": "integer", "nullable": True,
                 "description": "Counted so far in this minute; null without a limit (the "
                                "gateway then counts nothing)."},
        "remaining": {"type": "integer", "nullable": True,
                      "description": "limit − used, at least 0; null without a limit."},
        "reset_seconds": {"type": "integer",
                          "description": "Seconds until the window starts again."},
    },
    "required": ["limit", "used", "remaining", "reset_seconds"],
}

_RATE_LIMITS = {
    "type": "object",
    "properties": {"requests": {"$ref": "#/components/schemas/QuotaWindow"},
                   "tokens": {"$ref": "#/components/schemas/QuotaWindow"}},
    "required": ["requests", "tokens"],
}

_AMOUNT = {"oneOf": [{"type": "integer"}, {"type": "string"}],
           "description": "Tokens (an integer), or money as a decimal string in `currency`."}

_BUDGET = {
    "type": "object",
    "description": "A budget that counts this key's usage, in its current period.",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "scope": {"type": "string", "enum": ["tenant", "key"],
                  "description": "The whole tenant's usage, or only this key's."},
        "model": {"type": "string", "nullable": True,
                  "description": "Only this model's usage; null: every model."},
        "unit": {"type": "string", "enum": ["tokens", "money"]},
        "currency": {"type": "string", "nullable": True},
        "limit": _AMOUNT, "used": _AMOUNT, "remaining": _AMOUNT,
        "blocks": {"type": "boolean",
                   "description": "Requests are refused (429 insufficient_quota) once spent."},
        "resets_at": {"type": "string", "format": "date-time",
                      "description": "When the period ends and the budget starts again."},
    },
    "required": ["id", "name", "scope", "model", "unit", "currency", "limit", "used",
                 "remaining", "blocks", "resets_at"],
}

_QUOTA = {
    "type": "object",
    "properties": {
        "object": {"type": "string", "enum": ["quota"]},
        "key": {"type": "object", "properties": {
            "id": {"type": "integer", "description": "The calling key's id."},
            "rate_limits": _RATE_LIMITS}, "required": ["id", "rate_limits"]},
        "tenant": {"type": "object", "properties": {
            "slug": {"type": "string"}, "rate_limits": _RATE_LIMITS},
            "required": ["slug", "rate_limits"]},
        "budget": {"type": "object", "description": (
            "What the tightest budgets of every model have left: the token budget with the "
            "fewest tokens, the money budget with the smallest share. The same figures as "
            "the x-budget-* headers of every /v1 response."), "properties": {
            "remaining_tokens": {"type": "integer", "nullable": True},
            "remaining_amount": {"type": "string", "nullable": True},
            "currency": {"type": "string", "nullable": True},
            "resets_at": {"type": "string", "format": "date-time", "nullable": True}},
            "required": ["remaining_tokens", "remaining_amount", "currency", "resets_at"]},
        "budgets": {"type": "array", "items": {"$ref": "#/components/schemas/QuotaBudget"}},
    },
    "required": ["object", "key", "tenant", "budget", "budgets"],
}

_OPENAI_ERROR = {
    "type": "object",
    "description": "OpenAI's error shape, used by every /v1 answer.",
    "properties": {"error": {"type": "object", "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": "string", "nullable": True},
        "code": {"type": "string", "nullable": True}},
        "required": ["message", "type", "param", "code"]}},
    "required": ["error"],
}


def _header(description: str, kind: str = "string") -> dict:
    return {"description": description, "schema": {"type": kind}}


BUDGET_HEADERS = {
    "x-budget-limit-tokens": _header("Limit of the token budget with the fewest tokens left.",
                                     "integer"),
    "x-budget-remaining-tokens": _header("Tokens that budget has left.", "integer"),
    "x-budget-reset-tokens": _header("When that budget's period ends (RFC 3339, UTC)."),
    "x-budget-limit-amount": _header("Limit of the money budget with the smallest share left."),
    "x-budget-remaining-amount": _header("Money that budget has left (a decimal)."),
    "x-budget-currency": _header("That budget's currency (ISO 4217)."),
    "x-budget-reset-amount": _header("When that budget's period ends (RFC 3339, UTC)."),
    "x-budget-reset": _header("The earlier of the two resets (RFC 3339, UTC)."),
}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/OpenAIError"}}}}


def add_gateway_paths(result: dict, generator, request, public) -> dict:
    components = result.setdefault("components", {})
    components.setdefault("schemas", {}).update({
        "Quota": _QUOTA, "QuotaWindow": _WINDOW, "QuotaBudget": _BUDGET,
        "OpenAIError": _OPENAI_ERROR})
    components.setdefault("securitySchemes", {})["gatewayApiKey"] = {
        "type": "http", "scheme": "bearer",
        "description": "A tenant API key (`smp_<prefix>_<secret>`), as for every /v1 call."}
    result.setdefault("paths", {})["/v1/quota"] = {"get": {
        "operationId": "v1_quota",
        "tags": ["v1"],
        "summary": "What the calling API key has left",
        "description": (
            "The calling key's and its tenant's requests and tokens left in the current "
            "rate-limit minute, and every budget that counts the key's usage with what it has "
            "left in its period (money and tokens). Read from the gateway's own counters; "
            "calling it counts against no limit. Budgets trail usage by the usage drain "
            "(a few seconds)."),
        "security": [{"gatewayApiKey": []}],
        "responses": {
            "200": {"description": "The figures.", "headers": BUDGET_HEADERS,
                    "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Quota"}}}},
            "401": _error("No key, or a wrong, expired or revoked one."),
            "403": _error("The tenant is suspended, or the key may not be used from this "
                          "network."),
            "503": _error("The gateway can't read its counters right now (`quota_unavailable`)"
                          "; retry shortly."),
        },
    }}
    return result
