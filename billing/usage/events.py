"""The usage stream: where a producer (the gateway) puts one event per metered request, and
what billing's drain (`billing.usage.drain`) reads.

An event is a JSON object under the entry's field `e`: `request_id`, `tenant_id`, `ts` (epoch
seconds), `key_id`, `model_id`, `model` (slug), `deployment_id`, `endpoint`, `status`,
`streamed`, `input_tokens`, `output_tokens`, `estimated`, `latency_ms`, `ttft_ms` — never any
prompt or answer content.
"""

STREAM = "gateway:usage"
