"""OpenAI's error shape for everything under /v1/: {"error": {message, type, param, code}}
(`/v1/messages` answers in Anthropic's shape: `gateway.apis.messages`)."""

from __future__ import annotations

import orjson


class GatewayError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None,
                 headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or []

    def body(self) -> bytes:
        return orjson.dumps({"error": {"message": self.message, "type": self.type,
                                       "param": self.param, "code": self.code}})


def missing_key(hint: str = "Send it in the Authorization header as 'Bearer YOUR_KEY'"
                ) -> GatewayError:
    return GatewayError(401, f"You didn't provide an API key. {hint}; create keys in the "
                             "portal under API keys.")


def invalid_key(reason: str = "Incorrect API key provided.") -> GatewayError:
    return GatewayError(401, reason, code="invalid_api_key")


def model_not_found(model: str) -> GatewayError:
    return GatewayError(404, f"The model `{model}` does not exist or you do not have access "
                             "to it.", code="model_not_found", param="model")


def model_retired(model: str, successor: str) -> GatewayError:
    """A retired model, to a tenant that was entitled to it: OpenAI's 404 for a model that
    was shut down, with what to use instead."""
    instead = (f"use `{successor}` instead" if successor
               else "choose another model from GET /v1/models")
    return GatewayError(404, f"The model `{model}` was retired and is no longer served; "
                             f"{instead}.", code="model_not_found", param="model")


def bad_request(message: str, *, param: str | None = None, code: str | None = None
                ) -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def request_too_large(limit: int) -> GatewayError:
    # The server discards the rest of the body (for a while: portal.server), so a client
    # still sending it reads this answer rather than a reset connection.
    return GatewayError(413, f"The request body is larger than {limit} bytes; send less, or "
                             "split the input over several requests.", code="request_too_large")


def insufficient_quota(budget_name: str) -> GatewayError:
    """OpenAI's answer when the account's quota is spent: 429, type and code
    `insufficient_quota` (clients treat it as "don't retry", unlike a rate limit)."""
    return GatewayError(429, f"You exceeded your budget “{budget_name}”. Requests under it "
                             "are refused until its next period starts or an admin raises it "
                             "in the portal under Budgets.",
                        type="insufficient_quota", code="insufficient_quota")
