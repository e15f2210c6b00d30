"""The local proxy through the official ``openai`` client: same text as the SDK, OpenAI's shapes and errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from securechat.cli import main
from securechat.client import SecureChatClient
from securechat.framing import encode_frame
from securechat.proxy import MODEL_ID, create_proxy_app
from securechat.proxy.origin import allowed_hosts
from tests.client_harness import (
    FRAME_CAPACITY,
    REGISTERS,
    LocalService,
    Tamper,
    TrustFiles,
    make_worker,
    serve_asgi,
    serve_gateway,
)

# The first piece fills one frame exactly, so the answer arrives as two text frames: ANSWER[0], then the rest.
ANSWER = ("x" * FRAME_CAPACITY, "Sealed ", "end ", "to ", "end.")


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> TrustFiles:
    return TrustFiles.create(tmp_path_factory.mktemp("trust"))


@pytest.fixture
def service(trust: TrustFiles) -> Iterator[LocalService]:
    with serve_gateway([make_worker("w0", trust.root, chunks=ANSWER)]) as running:
        yield running


@pytest.fixture
def proxy_url(service: LocalService, trust: TrustFiles) -> Iterator[str]:
    app = create_proxy_app(lambda: SecureChatClient(trust.client_config(service.url)))
    with serve_asgi(app, lifespan="on") as url:
        yield url


def _openai(proxy_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{proxy_url}/v1", api_key="unused", max_retries=0)


def test_models_lists_the_model(proxy_url: str) -> None:
    assert [model.id for model in _openai(proxy_url).models.list()] == [MODEL_ID]


def test_non_streamed_and_streamed_answers_equal_the_sdk(
    proxy_url: str, service: LocalService, trust: TrustFiles
) -> None:
    sdk_text = SecureChatClient(trust.client_config(service.url)).chat("Hi")
    client = _openai(proxy_url)
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    completion = client.chat.completions.create(
        model=MODEL_ID,
        messages=messages,
        max_tokens=16,
        temperature=0.5,
        top_p=0.9,
        seed=1,  # type: ignore[arg-type]
    )
    assert completion.choices[0].message.content == sdk_text == "".join(ANSWER)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == len(ANSWER)
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + len(ANSWER)

    chunks = list(
        client.chat.completions.create(
            model=MODEL_ID,
            messages=messages,
            max_completion_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == sdk_text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(ANSWER)
    assert service.paths["/infer"] == 3  # every request went sealed through the gateway


def test_refused_attestation_is_an_openai_error(trust: TrustFiles, tmp_path: Path) -> None:
    bad = make_worker("w0", trust.root, {**REGISTERS, "code": "55" * 32})
    with serve_gateway([bad]) as service:
        app = create_proxy_app(lambda: SecureChatClient(trust.client_config(service.url)))
        with serve_asgi(app, lifespan="on") as url:
            with pytest.raises(openai.APIStatusError) as caught:
                _openai(url).chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Hi"}])
            for stream in (False, True):
                answer = httpx.post(
                    f"{url}/v1/chat/completions",
                    json={"model": MODEL_ID, "messages": [{"role": "user", "content": "Hi"}], "stream": stream},
                )
                assert answer.status_code == 502 and answer.json()["error"]["code"] == "attestation_failed"
    assert caught.value.status_code == 502
    assert "register_not_allowed:code" in caught.value.message
    assert service.paths["/infer"] == 0


@pytest.mark.parametrize(
    ("kwargs", "status", "param"),
    [
        ({"json": {"messages": []}}, 400, "messages"),
        ({"json": {"messages": [{"role": "user", "content": "secret"}], "temperature": 9}}, 400, "temperature"),
        ({"json": {"messages": [{"role": "user", "content": "secret"}], "n": 9}}, 400, "n"),
        (
            {"json": {"messages": [{"role": "user", "content": "secret"}], "tools": [{"type": "function"}]}},
            400,
            "tools",
        ),
        ({"content": b'{"messages": [{"role": "user", "content": "secret"}]}'}, 415, None),
    ],
)
def test_bad_requests_get_openai_errors_without_echoing_input(
    proxy_url: str, service: LocalService, kwargs: dict[str, object], status: int, param: str | None
) -> None:
    answer = httpx.post(f"{proxy_url}/v1/chat/completions", **kwargs)  # type: ignore[arg-type]
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and "secret" not in answer.text
    if param is not None:
        assert error["param"] == param
    assert service.paths["/infer"] == 0


def test_only_loopback_host_headers_are_served(proxy_url: str) -> None:
    assert httpx.get(f"{proxy_url}/v1/models", headers={"Host": "attacker.example"}).status_code == 400


def test_a_proxy_bound_beyond_loopback_serves_only_its_address_and_the_names_given(
    service: LocalService, trust: TrustFiles
) -> None:
    """DNS rebinding: a page on attacker.example whose name now resolves to the proxy sends Host: attacker.example.
    Bound to a LAN address, the proxy answers that address and the names given on the command line only."""
    hosts = allowed_hosts("10.1.2.3", ["proxy.internal"])
    assert hosts == ["10.1.2.3", "proxy.internal"]
    app = create_proxy_app(lambda: SecureChatClient(trust.client_config(service.url)), allowed_hosts=hosts)
    with serve_asgi(app, lifespan="on") as url:
        for host, status in [("10.1.2.3", 200), ("proxy.internal:8080", 200), ("attacker.example", 400), ("", 400)]:
            assert httpx.get(f"{url}/v1/models", headers={"Host": host}).status_code == status, host
    assert allowed_hosts("0.0.0.0") == [] and allowed_hosts("::", ["a.example"]) == ["a.example"]
    assert allowed_hosts("fd00::1") == ["[fd00::1]"]


def test_the_proxy_will_not_listen_on_every_address_without_names(
    trust: TrustFiles, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["proxy", "--host", "0.0.0.0", *trust.cli_flags("http://127.0.0.1:9")]) == 2
    assert "--allowed-host" in capsys.readouterr().err


def test_a_tampered_answer_is_an_error_never_text(service: LocalService, trust: TrustFiles) -> None:
    def flip_second_frame(frames: list[bytes]) -> bytes:  # frames[0] is the start frame, [1] the first text
        frames[2] = frames[2][:-1] + bytes([frames[2][-1] ^ 1])
        return b"".join(encode_frame(frame) for frame in frames)

    def factory() -> SecureChatClient:
        return SecureChatClient(trust.client_config(service.url), httpx.Client(transport=Tamper(flip_second_frame)))

    with serve_asgi(create_proxy_app(factory), lifespan="on") as url:
        client = _openai(url)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Hi"}])
        pieces: list[str] = []
        with pytest.raises(openai.APIError) as streamed:
            for chunk in client.chat.completions.create(
                model=MODEL_ID, messages=[{"role": "user", "content": "Hi"}], stream=True
            ):
                pieces.append(chunk.choices[0].delta.content or "")
    assert caught.value.status_code == 502 and caught.value.code == "response_verification_failed"
    assert "".join(pieces) == ANSWER[0]  # the authenticated first piece, then the stream failed loudly
    assert "verification" in streamed.value.message
