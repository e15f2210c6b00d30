"""Vector stores, files, search, file-search chats and embeddings through the proxy, with the official openai
package: OpenAI's shapes over sealed collections."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from securechat.proxy import create_proxy_app
from securechat.rag.embedder import MiniLMEmbedder
from securechat.rag.store import SQLiteDocumentStore
from tests.client_harness import LocalService, TrustFiles, serve_asgi
from tests.fakes import ScriptedEngine
from tests.rag_harness import ANSWER, BREAD, TRAINS, client_for, serve_rag


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> TrustFiles:
    return TrustFiles.create(tmp_path_factory.mktemp("trust"))


@pytest.fixture
def service(trust: TrustFiles, embedder: MiniLMEmbedder, tmp_path: Path) -> Iterator[LocalService]:
    with serve_rag(trust, embedder, SQLiteDocumentStore(tmp_path / "docs.sqlite3"), ScriptedEngine(ANSWER)) as running:
        yield running


@pytest.fixture
def proxy_url(service: LocalService, trust: TrustFiles, tmp_path: Path) -> Iterator[str]:
    with serve_asgi(create_proxy_app(lambda: client_for(service, trust, tmp_path)), lifespan="on") as url:
        yield url


@pytest.fixture
def api(proxy_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{proxy_url}/v1", api_key="unused", max_retries=0)


def test_vector_stores_files_search_and_cited_chats(api: openai.OpenAI) -> None:
    store = api.vector_stores.create(name="kitchen")
    assert store.name == "kitchen" and store.object == "vector_store"
    bread = api.vector_stores.files.upload(vector_store_id=store.id, file=("bread.md", BREAD.encode()))
    trains = api.vector_stores.files.upload(vector_store_id=store.id, file=("trains.txt", TRAINS.encode()))
    assert bread.status == "completed" and bread.vector_store_id == store.id
    assert {f.id for f in api.vector_stores.files.list(vector_store_id=store.id)} == {bread.id, trains.id}
    assert api.vector_stores.retrieve(store.id).file_counts.completed == 2
    assert [s.id for s in api.vector_stores.list()] == [store.id]

    results = api.vector_stores.search(store.id, query="How long should the dough rise?", max_num_results=2)
    first = results.data[0]
    assert (first.file_id, first.filename) == (bread.id, "bread.md") and "Knead" in first.content[0].text
    assert first.score > results.data[1].score

    messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Train time?"}]
    reply = api.chat.completions.create(
        model="securechat", messages=messages, extra_body={"vector_store_ids": [store.id], "max_num_results": 1}
    )
    assert reply.choices[0].message.content == "".join(ANSWER)
    citations = (reply.model_extra or {})["citations"]
    assert citations == [
        {
            "n": 1,
            "file_id": trains.id,
            "filename": "trains.txt",
            "chunk_index": 0,
            "score": citations[0]["score"],
            "page": None,
            "heading": None,
            "text": TRAINS,
        }
    ]
    chunks = list(
        api.chat.completions.create(
            model="securechat", messages=messages, stream=True, extra_body={"vector_store_ids": [store.id]}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(ANSWER)
    assert (chunks[-1].model_extra or {})["citations"][0]["file_id"] == trains.id

    assert api.vector_stores.files.delete(file_id=trains.id, vector_store_id=store.id).deleted
    assert [f.id for f in api.vector_stores.files.list(vector_store_id=store.id)] == [bread.id]
    assert api.vector_stores.delete(store.id).deleted
    with pytest.raises(openai.NotFoundError):
        api.vector_stores.search(store.id, query="bread")


def test_embeddings_are_sealed_to_a_worker_and_equal_the_models(api: openai.OpenAI, embedder: MiniLMEmbedder) -> None:
    texts = ["private sentence one", "and two"]
    response = api.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
    vectors = np.array([d.embedding for d in response.data], dtype=np.float32)
    assert vectors.shape == (2, 384) and response.usage.prompt_tokens > 2
    np.testing.assert_allclose(vectors, embedder.embed(texts), atol=1e-6)
    floats = api.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0], encoding_format="float")
    np.testing.assert_allclose(floats.data[0].embedding, vectors[0], atol=1e-6)
    with pytest.raises(openai.BadRequestError) as wrong_model:
        api.embeddings.create(model="text-embedding-3-small", input="x")
    assert wrong_model.value.body["param"] == "model"  # type: ignore[index]


def test_bad_files_and_unknown_stores_get_openai_errors(api: openai.OpenAI) -> None:
    store = api.vector_stores.create(name="x")
    with pytest.raises(openai.APIStatusError) as odd:
        api.files.create(file=("slides.key", b"\x00\x01keynote"), purpose="assistants")
    assert odd.value.status_code == 415
    broken = api.files.create(file=("slides.pdf", b"%PDF-1.7 and nothing else"), purpose="assistants")
    with pytest.raises(openai.APIStatusError) as malformed:  # accepted as a PDF; the worker finds it broken
        api.vector_stores.files.create(vector_store_id=store.id, file_id=broken.id)
    assert malformed.value.status_code == 400 and malformed.value.body["code"] == "malformed_document"  # type: ignore[index]
    empty = api.files.create(file=("empty.txt", b"   \n"), purpose="assistants")
    with pytest.raises(openai.APIStatusError) as refused:
        api.vector_stores.files.create(vector_store_id=store.id, file_id=empty.id)
    assert refused.value.status_code == 413
    with pytest.raises(openai.NotFoundError):
        api.chat.completions.create(
            model="securechat",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"vector_store_ids": ["col_unknown"]},
        )
    with pytest.raises(openai.BadRequestError) as two:
        api.chat.completions.create(
            model="securechat",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"vector_store_ids": ["a", "b"]},
        )
    assert two.value.body["param"] == "vector_store_ids"  # type: ignore[index]


def test_a_page_on_another_origin_cannot_drive_the_proxy(proxy_url: str) -> None:
    upload = httpx.post(
        f"{proxy_url}/v1/files",
        files={"file": ("a.txt", b"text")},
        data={"purpose": "assistants"},
        headers={"Origin": "https://evil.example"},
    )
    chat = httpx.post(
        f"{proxy_url}/v1/chat/completions",
        json={"model": "securechat", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Origin": "https://evil.example"},
    )
    assert upload.status_code == chat.status_code == 403 and chat.json()["error"]["code"] == "cross_origin"
    own = httpx.get(f"{proxy_url}/v1/models", headers={"Origin": proxy_url})
    assert own.status_code == 200
