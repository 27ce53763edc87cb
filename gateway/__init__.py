"""The OpenAI-compatible gateway: tenant API keys, the `/v1` ASGI app in front of the model
servers, rate limits and the usage events it queues for billing."""
