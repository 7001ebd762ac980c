"""The simulator answers like the real APIs where clients and SDKs look: Gemini's 429 body,
Anthropic's request ids, Gemini's JSON-array stream, and the endpoints besides chat
(model details, token counts, Ollama's show, ps, generate and version).

Shapes follow the providers' API references (OpenAI "Retrieve model", Anthropic "Get a
Model" and "Count Message tokens", Gemini "models.get" and "models.countTokens", Ollama's
docs/api.md) and real Gemini 429 bodies quoted in public issue reports.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from desktop_app.core.events import Finished
from desktop_app.simulator import Fault, Simulator
from tests.helpers import collect, engine_for, request_for, text_of

ASK = "Tell me about rivers."
ANTHROPIC = {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-test"}


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(tokens_per_s=0, default_tokens=30) as simulator:
        yield simulator


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http


def gemini_body(text: str = ASK) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def anthropic_body(text: str = ASK, *, stream: bool = False) -> dict[str, Any]:
    return {
        "model": "sim-small",
        "max_tokens": 256,
        "stream": stream,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": text}],
    }


# -- Gemini's 429 ------------------------------------------------------------------------


def _details(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["@type"].rsplit(".", 1)[-1]: d for d in body["error"]["details"]}


async def test_gemini_429_says_its_wait_in_retry_info_and_sends_no_retry_after(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.script(
        Fault(protocol="gemini", status=429, retry_after=5),
        Fault(protocol="gemini", status=429, retry_after_ms=400),
    )
    url = f"{sim.url}/v1beta/models/sim-small:streamGenerateContent?alt=sse"
    response = await client.post(url, json=gemini_body())
    assert response.status_code == 429
    assert "retry-after" not in response.headers
    assert "retry-after-ms" not in response.headers
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    body = response.json()
    assert body["error"]["code"] == 429
    assert body["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert "quota" in body["error"]["message"]
    details = _details(body)
    assert details["RetryInfo"] == {
        "@type": "type.googleapis.com/google.rpc.RetryInfo",
        "retryDelay": "5s",
    }
    violation = details["QuotaFailure"]["violations"][0]
    assert violation["quotaMetric"].startswith("generativelanguage.googleapis.com/")
    assert violation["quotaDimensions"]["model"] == "sim-small"
    assert details["Help"]["links"][0]["url"].startswith("https://")

    response = await client.post(url, json=gemini_body())
    assert response.status_code == 429 and "retry-after-ms" not in response.headers
    assert _details(response.json())["RetryInfo"]["retryDelay"] == "0.400s"


async def test_a_gemini_429_sends_retry_after_only_when_scripted(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.script(Fault(protocol="gemini", status=429, retry_after=2, headers={"Retry-After": "2"}))
    url = f"{sim.url}/v1beta/models/sim-small:generateContent"
    response = await client.post(url, json=gemini_body())
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert _details(response.json())["RetryInfo"]["retryDelay"] == "2s"


async def test_a_gemini_error_other_than_429_has_no_retry_info(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.script(Fault(protocol="gemini", status=503))
    response = await client.post(
        f"{sim.url}/v1beta/models/sim-small:generateContent", json=gemini_body()
    )
    assert response.status_code == 503
    assert "details" not in response.json()["error"]


# -- Anthropic's request id ------------------------------------------------------------


async def test_anthropic_errors_carry_one_request_id_in_header_and_body(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    url = sim.url + "/v1/messages"
    sim.script(
        Fault(protocol="anthropic", status=529),
        Fault(protocol="anthropic", error_event_after=3),
    )
    answers = [
        await client.post(url, json=anthropic_body(), headers=ANTHROPIC),  # scripted 529
        await client.post(url, json=anthropic_body(), headers=ANTHROPIC),  # whole-body 500
        await client.post(url, content=b"{not json", headers=ANTHROPIC),  # 400
        await client.get(sim.url + "/v1/models/no-such-model", headers=ANTHROPIC),  # 404
    ]
    assert [a.status_code for a in answers] == [529, 500, 400, 404]
    ids = set()
    for answer in answers:
        header = answer.headers["request-id"]
        assert header.startswith("req_011")
        assert answer.json()["request_id"] == header
        ids.add(header)
    assert len(ids) == len(answers)  # each answer its own id


async def test_anthropic_stream_error_event_names_the_stream_request_id(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.script(Fault(protocol="anthropic", error_event_after=2))
    response = await client.post(
        sim.url + "/v1/messages", json=anthropic_body(stream=True), headers=ANTHROPIC
    )
    assert response.status_code == 200
    error_line = next(
        line for line in response.text.splitlines() if line.startswith('data: {"type":"error"')
    )
    assert json.loads(error_line[len("data: ") :])["request_id"] == response.headers["request-id"]


# -- Gemini's stream without alt=sse -----------------------------------------------------


async def test_gemini_stream_without_alt_sse_is_a_json_array(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    url = f"{sim.url}/v1beta/models/sim-small:streamGenerateContent"
    response = await client.post(url, json=gemini_body())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    assert response.text.startswith("[{")
    chunks = json.loads(response.text)
    assert isinstance(chunks, list) and len(chunks) > 1
    text = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
    expected = sim.reply_text({"contents": gemini_body()["contents"]}, "gemini")
    assert text == expected
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert "finishReason" not in chunks[0]["candidates"][0]
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == len(chunks)

    sse = await client.post(url + "?alt=sse", json=gemini_body())
    assert sse.headers["content-type"] == "text/event-stream"
    assert sse.text.startswith("data: {")


async def test_gemini_json_array_stream_cut_short_is_not_a_whole_array(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.script(Fault(protocol="gemini", truncate_after=4))
    url = f"{sim.url}/v1beta/models/sim-small:streamGenerateContent"
    response = await client.post(url, json=gemini_body())
    assert response.text.startswith("[{")
    with pytest.raises(ValueError):
        json.loads(response.text)


async def test_rill_asks_gemini_for_sse_and_reads_the_reply(sim: Simulator) -> None:
    engine = engine_for()
    try:
        events = await collect(engine.stream(request_for(sim, "gemini", ASK)))
    finally:
        await engine.aclose()
    assert isinstance(events[-1], Finished)
    (recorded,) = sim.chat_requests
    assert "alt=sse" in recorded.query.split("&")
    assert text_of(events) == sim.reply_text(recorded.json, "gemini")


# -- endpoints besides chat ------------------------------------------------------------


async def test_openai_retrieves_one_model(sim: Simulator, client: httpx.AsyncClient) -> None:
    response = await client.get(sim.url + "/v1/models/sim-large")
    assert response.status_code == 200
    model = response.json()
    assert model["id"] == "sim-large" and model["object"] == "model"
    assert set(model) == {"id", "object", "created", "owned_by"}
    missing = await client.get(sim.url + "/v1/models/gpt-nothing")
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["code"] == "model_not_found" and "gpt-nothing" in error["message"]


async def test_anthropic_gets_one_model_and_counts_tokens(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    response = await client.get(sim.url + "/v1/models/sim-small", headers=ANTHROPIC)
    assert response.status_code == 200
    model = response.json()
    assert model["type"] == "model" and model["id"] == "sim-small"
    assert {"display_name", "created_at"} <= set(model)
    missing = await client.get(sim.url + "/v1/models/claude-nothing", headers=ANTHROPIC)
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    assert "claude-nothing" in missing.json()["error"]["message"]

    body = anthropic_body("one two three four five")
    body.pop("max_tokens")
    body.pop("stream")
    counted = await client.post(sim.url + "/v1/messages/count_tokens", json=body, headers=ANTHROPIC)
    assert counted.status_code == 200
    assert counted.json() == {"input_tokens": 2 + 5}  # "Be brief." and the five words
    reply = await client.post(
        sim.url + "/v1/messages", json={**body, "max_tokens": 50}, headers=ANTHROPIC
    )
    assert reply.json()["usage"]["input_tokens"] == counted.json()["input_tokens"]
    bad = await client.post(sim.url + "/v1/messages/count_tokens", content=b"[", headers=ANTHROPIC)
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"


async def test_gemini_gets_one_model_and_counts_tokens(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    response = await client.get(sim.url + "/v1beta/models/sim-small")
    assert response.status_code == 200
    model = response.json()
    assert model["name"] == "models/sim-small"
    assert "countTokens" in model["supportedGenerationMethods"]
    assert model["inputTokenLimit"] > 0
    missing = await client.get(sim.url + "/v1beta/models/gemini-nothing")
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["status"] == "NOT_FOUND" and "models/gemini-nothing" in error["message"]

    counted = await client.post(
        sim.url + "/v1beta/models/sim-small:countTokens", json=gemini_body("a b c d")
    )
    assert counted.status_code == 200
    assert counted.json()["totalTokens"] == 4
    assert counted.json()["promptTokensDetails"] == [{"modality": "TEXT", "tokenCount": 4}]
    wrapped = await client.post(
        sim.url + "/v1beta/models/sim-small:countTokens",
        json={"generateContentRequest": {"model": "models/sim-small", **gemini_body("a b")}},
    )
    assert wrapped.json()["totalTokens"] == 2
    unknown = await client.post(
        sim.url + "/v1beta/models/gemini-nothing:countTokens", json=gemini_body()
    )
    assert unknown.status_code == 404


async def test_ollama_show_ps_and_version(sim: Simulator, client: httpx.AsyncClient) -> None:
    shown = await client.post(sim.url + "/api/show", json={"model": "sim-small"})
    assert shown.status_code == 200
    info = shown.json()
    arch = info["model_info"]["general.architecture"]
    assert info["model_info"][f"{arch}.context_length"] > 0
    assert info["details"]["format"] == "gguf"
    assert "completion" in info["capabilities"]
    assert {"modelfile", "parameters", "template", "modified_at"} <= set(info)
    tagged = await client.post(sim.url + "/api/show", json={"name": "sim-small:latest"})
    assert tagged.status_code == 200
    missing = await client.post(sim.url + "/api/show", json={"model": "llama-nothing"})
    assert missing.status_code == 404
    assert missing.json() == {"error": "model 'llama-nothing' not found"}

    assert (await client.get(sim.url + "/api/ps")).json() == {"models": []}
    await client.post(
        sim.url + "/api/chat",
        json={
            "model": "sim-large",
            "stream": False,
            "messages": [{"role": "user", "content": ASK}],
        },
    )
    running = (await client.get(sim.url + "/api/ps")).json()["models"]
    assert [m["name"] for m in running] == ["sim-large"]
    assert running[0]["size_vram"] > 0 and running[0]["expires_at"]
    assert running[0]["context_length"] > 0

    version = await client.get(sim.url + "/api/version")
    assert version.status_code == 200 and version.json()["version"]


async def test_ollama_generate_streams_ndjson_responses(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    expected = sim.reply_text(
        {"model": "sim-small", "messages": [{"role": "user", "content": ASK}]}, "ollama"
    )
    response = await client.post(
        sim.url + "/api/generate", json={"model": "sim-small", "prompt": ASK}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert all(not line["done"] for line in lines[:-1])
    assert "".join(line["response"] for line in lines) == expected
    last = lines[-1]
    assert last["done"] is True and last["done_reason"] == "stop"
    assert last["eval_count"] == len(lines) - 1
    assert isinstance(last["context"], list)

    whole = await client.post(
        sim.url + "/api/generate",
        json={"model": "sim-small", "prompt": ASK, "stream": False},
    )
    body = whole.json()
    assert body["response"] == expected and body["done"] is True
    assert body["prompt_eval_count"] == 4

    short = await client.post(
        sim.url + "/api/generate",
        json={"model": "sim-small", "prompt": ASK, "stream": False, "options": {"num_predict": 3}},
    )
    assert short.json()["done_reason"] == "length"
    assert short.json()["eval_count"] == 3

    loaded = await client.post(sim.url + "/api/generate", json={"model": "sim-small"})
    assert loaded.json()["done_reason"] == "load" and loaded.json()["response"] == ""


async def test_ollama_generate_takes_scripted_faults(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.script(Fault(protocol="ollama", status=500, message="model runner crashed"))
    response = await client.post(
        sim.url + "/api/generate", json={"model": "sim-small", "prompt": ASK}
    )
    assert response.status_code == 500
    assert response.json() == {"error": "model runner crashed"}
