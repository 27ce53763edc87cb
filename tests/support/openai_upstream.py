"""A small, fast OpenAI-compatible model server for tests and benchmarks (a stand-in for vLLM).

Answers deterministically: a completion echoes how many words the prompt had; `usage` counts
words. Run: python tests/support/openai_upstream.py --port 9100 [--models a,b] [--no-usage]
[--api-key K] [--chunk-delay 0.01] [--ping]. Serves /v1/models, /v1/chat/completions (streaming with
stream_options.include_usage, like vLLM), /v1/completions, /v1/embeddings, OpenAI's
/v1/responses and Anthropic's /v1/messages (streamed as each API streams, usage in each API's
own shape).

Cached and reasoning tokens, as servers with prefix caching and reasoning models report them:
a chat or Responses request with a `prompt_cache_key` reports as cached the words its prompt
shares, from the start, with the previous prompt under that key; a Messages request whose
system blocks carry `cache_control` writes them to the cache the first time
(`cache_creation_input_tokens`) and reads them afterwards (`cache_read_input_tokens`). A
request that asks for reasoning (`reasoning_effort`, `reasoning`, `thinking`) reasons for
REASONING_TOKENS tokens, counted in its output.

Misbehaving on purpose, for the gateway's limits: `--pad-bytes N` pads every non-streamed
answer with N bytes (`--chunked`: sent without Content-Length); `--stream-fault endless-event`
starts, after `--fault-after K` words, an event that never ends, and `--stream-fault stall`
falls silent then, keeping the connection open.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson
from aiohttp import web

ANSWER_WORDS = ["Sovereign", "models", "answer", "from", "inside", "the", "boundary", "."]
REASONING_TOKENS = 5


def _text_words(value) -> list[str]:
    """The words of a string or of text parts nested in lists and objects."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [word for item in value for word in _text_words(item)]
    if isinstance(value, dict):
        return _text_words(value.get("content")) + _text_words(value.get("text"))
    return []


def _words(value) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    if isinstance(value, dict):
        return _words(value.get("content"))
    return 0


def build_app(models: list[str], with_usage: bool, api_key: str, chunk_delay: float,
              delay: float = 0.0, pad_bytes: int = 0, chunked: bool = False,
              stream_fault: str = "", fault_after: int = 0, ping: bool = False):
    stats = {"requests": 0}
    prompt_cache: dict[str, list[str]] = {}  # prompt_cache_key → the previous prompt's words
    cached_prefixes: set[str] = set()  # Messages: system prefixes written to the cache

    def cached_words(key, words: list[str]) -> int:
        if not isinstance(key, str):
            return 0
        previous, shared = prompt_cache.get(key, []), 0
        while shared < min(len(previous), len(words)) and previous[shared] == words[shared]:
            shared += 1
        prompt_cache[key] = words
        return shared

    def authorized(request: web.Request) -> bool:
        return not api_key or request.headers.get("Authorization") == f"Bearer {api_key}"

    def error(status: int, message: str) -> web.Response:
        return web.Response(status=status, content_type="application/json", body=orjson.dumps(
            {"error": {"message": message, "type": "invalid_request_error", "param": None,
                       "code": None}}))

    async def list_models(request):
        if not authorized(request):
            return error(401, "bad upstream key")
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in models]},
            dumps=lambda o: orjson.dumps(o).decode())

    async def completions(request):
        stats["requests"] += 1
        if not authorized(request):
            return error(401, "bad upstream key")
        body = orjson.loads(await request.read())
        if delay:
            await asyncio.sleep(delay)
        if body.get("model") not in models:
            return error(404, f"model {body.get('model')} not served here")
        chat = request.path.endswith("chat/completions")
        prompt_tokens = _words(body.get("messages") if chat else body.get("prompt"))
        limit = body.get("max_tokens") or len(ANSWER_WORDS)
        words = ANSWER_WORDS[: max(1, min(limit, len(ANSWER_WORDS)))]
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                 "total_tokens": prompt_tokens + len(words)}
        if "prompt_cache_key" in body:
            prompt = _text_words(body.get("messages") if chat else body.get("prompt"))
            usage["prompt_tokens_details"] = {
                "cached_tokens": cached_words(body["prompt_cache_key"], prompt)}
        if body.get("reasoning_effort"):
            usage["completion_tokens"] += REASONING_TOKENS
            usage["total_tokens"] += REASONING_TOKENS
            usage["completion_tokens_details"] = {"reasoning_tokens": REASONING_TOKENS}
        base = {"id": "cmpl-test", "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            if chat:
                choice = {"index": 0, "finish_reason": "stop",
                          "message": {"role": "assistant", "content": " ".join(words)}}
                payload = {**base, "object": "chat.completion", "choices": [choice]}
            else:
                payload = {**base, "object": "text_completion",
                           "choices": [{"index": 0, "text": " ".join(words),
                                        "finish_reason": "stop"}]}
            if with_usage:
                payload["usage"] = usage
            if pad_bytes:
                payload["padding"] = "x" * pad_bytes
            if chunked:
                response = web.StreamResponse(headers={"Content-Type": "application/json"})
                response.enable_chunked_encoding()
                await response.prepare(request)
                encoded = orjson.dumps(payload)
                for start in range(0, len(encoded), 65536):
                    await response.write(encoded[start:start + 65536])
                await response.write_eof()
                return response
            return web.Response(body=orjson.dumps(payload), content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        kind = "chat.completion.chunk" if chat else "text_completion"
        for index, word in enumerate(words):
            if stream_fault and index == fault_after:
                try:
                    await misbehave(response)
                except ConnectionResetError:  # the gateway hung up, as it should
                    return response
            delta = ({"delta": {"content": (" " if index else "") + word}} if chat
                     else {"text": (" " if index else "") + word})
            chunk = {**base, "object": kind, "choices": [{"index": 0, **delta,
                                                          "finish_reason": None}]}
            if with_usage and body.get("stream_options", {}).get("include_usage"):
                chunk["usage"] = None
            if ping:  # an SSE comment, as llama-cpp-python's server sends to keep streams open
                await response.write(b": ping - 2026-12-03 07:00:00\n\n")
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            if chunk_delay:
                await asyncio.sleep(chunk_delay)
        if with_usage and body.get("stream_options", {}).get("include_usage"):
            await response.write(b"data: " + orjson.dumps(
                {**base, "object": kind, "choices": [], "usage": usage}) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def misbehave(response: web.StreamResponse) -> None:
        if stream_fault == "endless-event":
            await response.write(b"data: {\"choices\": [{\"delta\": {\"content\": \"")
            while True:  # until the reader goes away
                await response.write(b"x" * 65536)
                await asyncio.sleep(0.01)
        await asyncio.sleep(3600)  # stall

    async def embeddings(request):
        stats["requests"] += 1
        if not authorized(request):
            return error(401, "bad upstream key")
        body = orjson.loads(await request.read())
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        tokens = _words(inputs)
        payload = {"object": "list", "model": body["model"], "data": [
            {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3, float(i)]}
            for i in range(len(inputs))]}
        if with_usage:
            payload["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return web.Response(body=orjson.dumps(payload), content_type="application/json")

    async def sse(request, events) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        deltas = 0
        for name, data in events:
            if name.endswith("delta"):
                if stream_fault and deltas == fault_after:
                    try:
                        await misbehave(response)
                    except ConnectionResetError:  # the gateway hung up, as it should
                        return response
                deltas += 1
            await response.write(f"event: {name}\ndata: ".encode() + orjson.dumps(data)
                                 + b"\n\n")
            if chunk_delay and name.endswith("delta"):
                await asyncio.sleep(chunk_delay)
        await response.write_eof()
        return response

    async def responses(request):
        """OpenAI's Responses API."""
        stats["requests"] += 1
        if not authorized(request):
            return error(401, "bad upstream key")
        body = orjson.loads(await request.read())
        if body.get("model") not in models:
            return error(404, f"model {body.get('model')} not served here")
        prompt = _text_words(body.get("instructions")) + _text_words(body.get("input"))
        limit = body.get("max_output_tokens") or len(ANSWER_WORDS)
        words = ANSWER_WORDS[: max(1, min(limit, len(ANSWER_WORDS)))]
        reasoning = REASONING_TOKENS if body.get("reasoning") else 0
        usage = {"input_tokens": len(prompt),
                 "input_tokens_details": {"cached_tokens": cached_words(
                     body.get("prompt_cache_key"), prompt)},
                 "output_tokens": len(words) + reasoning,
                 "output_tokens_details": {"reasoning_tokens": reasoning},
                 "total_tokens": len(prompt) + len(words) + reasoning}
        text = " ".join(words)
        message = {"id": "msg_test", "type": "message", "role": "assistant",
                   "status": "completed", "content": [
                       {"type": "output_text", "text": text, "annotations": []}]}
        result = {"id": "resp_test", "object": "response", "created_at": int(time.time()),
                  "model": body["model"], "status": "completed", "output": [message],
                  "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                  "usage": usage if with_usage else None}
        if not body.get("stream"):
            return web.Response(body=orjson.dumps(result), content_type="application/json")
        started = {**result, "status": "in_progress", "output": [], "usage": None}
        events = [("response.created", {"type": "response.created", "sequence_number": 0,
                                         "response": started}),
                  ("response.output_item.added", {
                      "type": "response.output_item.added", "sequence_number": 1,
                      "output_index": 0, "item": {**message, "status": "in_progress",
                                                  "content": []}})]
        for index, word in enumerate(words):
            events.append(("response.output_text.delta", {
                "type": "response.output_text.delta", "sequence_number": 2 + index,
                "item_id": "msg_test", "output_index": 0, "content_index": 0,
                "delta": (" " if index else "") + word, "logprobs": []}))
        events.append(("response.completed", {"type": "response.completed",
                                               "sequence_number": 2 + len(words),
                                               "response": result}))
        return await sse(request, events)

    async def messages(request):
        """Anthropic's Messages API (as vLLM serves it)."""
        stats["requests"] += 1
        if not authorized(request):
            return error(401, "bad upstream key")
        body = orjson.loads(await request.read())
        if body.get("model") not in models:
            return error(404, f"model {body.get('model')} not served here")
        system = body.get("system")
        blocks = [{"type": "text", "text": system}] if isinstance(system, str) else system or []
        cacheable = [b for b in blocks if isinstance(b, dict) and b.get("cache_control")]
        prefix = " ".join(_text_words(cacheable))
        cache_read = cache_write = 0
        if prefix and prefix in cached_prefixes:
            cache_read = len(prefix.split())
        elif prefix:
            cached_prefixes.add(prefix)
            cache_write = len(prefix.split())
        prompt = len(_text_words(blocks)) + len(_text_words(body.get("messages")))
        limit = body.get("max_tokens") or len(ANSWER_WORDS)
        words = ANSWER_WORDS[: max(1, min(limit, len(ANSWER_WORDS)))]
        thinking = REASONING_TOKENS if body.get("thinking") else 0
        usage = {"input_tokens": prompt - cache_read - cache_write,
                 "cache_creation_input_tokens": cache_write,
                 "cache_read_input_tokens": cache_read, "output_tokens": len(words) + thinking}
        message = {"id": "msg_test", "type": "message", "role": "assistant",
                   "model": body["model"], "content": [{"type": "text",
                                                        "text": " ".join(words)}],
                   "stop_reason": "end_turn", "stop_sequence": None}
        if not body.get("stream"):
            if with_usage:
                message["usage"] = usage
            return web.Response(body=orjson.dumps(message), content_type="application/json")
        events = [("message_start", {"type": "message_start", "message": {
            **message, "content": [], "stop_reason": None,
            "usage": {**usage, "output_tokens": 1}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"})]
        for index, word in enumerate(words):
            events.append(("content_block_delta", {
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": (" " if index else "") + word}}))
        events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
                   ("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": "end_turn",
                                                "stop_sequence": None},
                                      "usage": {"output_tokens": usage["output_tokens"]}}),
                   ("message_stop", {"type": "message_stop"})]
        return await sse(request, events)

    async def stats_view(request):
        return web.json_response(stats)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/responses", responses)
    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/stats", stats_view)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--models", default="chat-small,embed-small,completion-small")
    parser.add_argument("--no-usage", action="store_true")
    parser.add_argument("--api-key", default="")
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    parser.add_argument("--pad-bytes", type=int, default=0)
    parser.add_argument("--chunked", action="store_true")
    parser.add_argument("--stream-fault", choices=["endless-event", "stall"], default="")
    parser.add_argument("--fault-after", type=int, default=0)
    parser.add_argument("--ping", action="store_true", help="SSE comments between chunks")
    args = parser.parse_args()
    app = build_app(args.models.split(","), not args.no_usage, args.api_key, args.chunk_delay,
                    args.delay, args.pad_bytes, args.chunked, args.stream_fault,
                    args.fault_after, args.ping)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
