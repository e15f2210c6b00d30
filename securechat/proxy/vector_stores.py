"""OpenAI's vector store, file and embedding routes on the local proxy, over SecureChat collections.

A vector store is a collection whose key the proxy's keyring holds; its name stays in the keyring, never on the
service. ``POST /v1/files`` keeps an uploaded text file in this process only (bounded, until it is attached or
the proxy stops); attaching it (``POST /v1/vector_stores/{id}/files``) seals it to the workers, and the file id
becomes the document id. Search, embeddings and chats with ``vector_store_ids`` are sealed the same way; every
answer is opened here.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, TypeVar

import numpy as np
from fastapi import APIRouter, File, Form, Path, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from securechat.client import ClientError, InvalidCiphertext, ResponseFailed, SecureChatClient
from securechat.client.collections import MEDIA_TYPES_BY_SUFFIX, Collection, DocumentError, DocumentFile
from securechat.client.keyring import KeyringError
from securechat.envelope import ID_PATTERN
from securechat.openapi_docs import json_body
from securechat.proxy.errors import ProxyError, ProxyRefusal, from_exception, invalid_request
from securechat.proxy.openai_common import error_responses
from securechat.rag.documents.model import BINARY_TYPES

MAX_UPLOAD_BYTES: Final = 4 << 20
MAX_PENDING_FILES: Final = 64
EMBEDDING_MODEL: Final = "all-MiniLM-L6-v2"
SDK_ERRORS = (ClientError, InvalidCiphertext, ResponseFailed)


@dataclass(frozen=True, slots=True)
class PendingFile:
    file_id: str
    filename: str
    data: bytes = field(repr=False)  # the file as uploaded: text is decoded, PDF, Word and HTML go as bytes
    media_type: str
    created_at: int

    def document(self) -> DocumentFile:
        if self.media_type in BINARY_TYPES:
            return DocumentFile.binary(self.filename, self.data, self.media_type)
        return DocumentFile.checked(self.filename, self.data.decode("utf-8"), self.media_type)


class PendingFiles:
    """Uploaded files waiting to be attached: in this process's memory only, the oldest dropped past the bound."""

    def __init__(self) -> None:
        self._files: OrderedDict[str, PendingFile] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, pending: PendingFile) -> None:
        with self._lock:
            self._files[pending.file_id] = pending
            while len(self._files) > MAX_PENDING_FILES:
                self._files.popitem(last=False)

    def get(self, file_id: StoreId) -> PendingFile | None:
        with self._lock:
            return self._files.get(file_id)


class NewVectorStore(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(default="", max_length=256)


class AttachFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    file_id: str = Field(pattern=r"^file-[0-9a-f]{32}$")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: str = Field(min_length=1, max_length=8192)
    max_num_results: int = Field(default=10, ge=1, le=20)


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str | list[str] = Field(min_length=1)
    model: str = EMBEDDING_MODEL
    encoding_format: str = Field(default="float", pattern="^(float|base64)$")  # base64: float32, little endian


StoreId = Annotated[str, Path(pattern=ID_PATTERN)]  # vector store and file ids: the service's id rule


def vector_store_router(client: Callable[[], SecureChatClient]) -> APIRouter:
    router = APIRouter()
    pending = PendingFiles()
    errors = error_responses()

    @router.post("/v1/vector_stores", responses=errors, openapi_extra=json_body(NewVectorStore, required=False))
    async def create_vector_store(request: Request) -> JSONResponse:
        body = await _json(request, NewVectorStore)
        return await _call(lambda c: _store_object(c.collections.create(body.name)), client)

    @router.get("/v1/vector_stores", responses=errors)
    async def list_vector_stores() -> JSONResponse:
        def listing(c: SecureChatClient) -> dict[str, Any]:
            stores = [_store_object(s) for s in c.collections.list_all() if s.has_key]
            return _page(stores)

        return await _call(listing, client)

    @router.get("/v1/vector_stores/{vector_store_id}", responses=errors)
    async def retrieve_vector_store(vector_store_id: StoreId) -> JSONResponse:
        def find(c: SecureChatClient) -> dict[str, Any]:
            for store in c.collections.list_all():
                if store.collection_id == vector_store_id and store.has_key:
                    return _store_object(store)
            raise KeyringError(f"no vector store {vector_store_id}")

        return await _call(find, client)

    @router.delete("/v1/vector_stores/{vector_store_id}", responses=errors)
    async def delete_vector_store(vector_store_id: StoreId) -> JSONResponse:
        def delete(c: SecureChatClient) -> dict[str, Any]:
            c.collections.delete(vector_store_id)
            return {"id": vector_store_id, "object": "vector_store.deleted", "deleted": True}

        return await _call(delete, client)

    @router.post("/v1/files", responses=errors)
    async def upload_file(file: UploadFile = File(...), purpose: str = Form("assistants")) -> JSONResponse:  # noqa: B008
        raw = await file.read(MAX_UPLOAD_BYTES + 1)
        filename = (file.filename or "upload.txt")[:255]
        if len(raw) > MAX_UPLOAD_BYTES:
            return invalid_request(f"files are limited to {MAX_UPLOAD_BYTES} bytes", "file", 413).response()
        suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        media_type = MEDIA_TYPES_BY_SUFFIX.get(suffix)
        try:
            if media_type is None:
                raise UnicodeError
            if media_type not in BINARY_TYPES:
                raw.decode("utf-8")
        except UnicodeError:
            return invalid_request(
                "supported files: .pdf, .docx, .html, and UTF-8 .txt and .md", "file", 415
            ).response()
        record = PendingFile(f"file-{uuid.uuid4().hex}", filename, raw, media_type, int(time.time()))
        pending.add(record)
        return JSONResponse(
            {
                "id": record.file_id,
                "object": "file",
                "bytes": len(raw),
                "created_at": record.created_at,
                "filename": filename,
                "purpose": purpose,
                "status": "processed",
            }
        )

    @router.post("/v1/vector_stores/{vector_store_id}/files", responses=errors, openapi_extra=json_body(AttachFile))
    async def attach_file(vector_store_id: StoreId, request: Request) -> JSONResponse:
        body = await _json(request, AttachFile)
        record = pending.get(body.file_id)
        if record is None:
            return invalid_request(f"no uploaded file {body.file_id} in this proxy", "file_id", 404).response()

        def attach(c: SecureChatClient) -> dict[str, Any]:
            c.collections.add(vector_store_id, [record.document()], doc_ids=[record.file_id])
            return _file_object(record.file_id, vector_store_id, len(record.data), record.created_at)

        return await _call(attach, client)

    @router.get("/v1/vector_stores/{vector_store_id}/files", responses=errors)
    async def list_files(vector_store_id: StoreId) -> JSONResponse:
        def listing(c: SecureChatClient) -> dict[str, Any]:
            documents = c.collections.documents(vector_store_id)
            return _page([_file_object(d.doc_id, vector_store_id, d.num_bytes, int(d.created_at)) for d in documents])

        return await _call(listing, client)

    @router.delete("/v1/vector_stores/{vector_store_id}/files/{file_id}", responses=errors)
    async def delete_file(vector_store_id: StoreId, file_id: StoreId) -> JSONResponse:
        def delete(c: SecureChatClient) -> dict[str, Any]:
            c.collections.delete_document(vector_store_id, file_id)
            return {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}

        return await _call(delete, client)

    @router.post("/v1/vector_stores/{vector_store_id}/search", responses=errors, openapi_extra=json_body(SearchRequest))
    async def search(vector_store_id: StoreId, request: Request) -> JSONResponse:
        body = await _json(request, SearchRequest)

        def run(c: SecureChatClient) -> dict[str, Any]:
            names = {d.doc_id: d.filename for d in c.collections.documents(vector_store_id)}
            hits = c.collections.search(vector_store_id, body.query, body.max_num_results)
            data = [
                {
                    "file_id": hit.doc_id,
                    "filename": names.get(hit.doc_id, ""),
                    "score": hit.score,
                    "attributes": {"chunk_index": hit.chunk_index},
                    "content": [{"type": "text", "text": hit.text}],
                }
                for hit in hits
            ]
            return {
                "object": "vector_store.search_results.page",
                "search_query": body.query,
                "data": data,
                "has_more": False,
                "next_page": None,
            }

        return await _call(run, client)

    @router.post("/v1/embeddings", responses=errors, openapi_extra=json_body(EmbeddingsRequest))
    async def embeddings(request: Request) -> JSONResponse:
        body = await _json(request, EmbeddingsRequest)
        if body.model != EMBEDDING_MODEL:
            return invalid_request(f"the embedding model is {EMBEDDING_MODEL}", "model").response()
        texts = [body.input] if isinstance(body.input, str) else body.input

        def run(c: SecureChatClient) -> dict[str, Any]:
            embeddings = c.embed(texts)
            data = [
                {"object": "embedding", "index": i, "embedding": _encoded(vector, body.encoding_format)}
                for i, vector in enumerate(embeddings.vectors)
            ]
            usage = {"prompt_tokens": embeddings.input_tokens, "total_tokens": embeddings.input_tokens}
            return {"object": "list", "data": data, "model": EMBEDDING_MODEL, "usage": usage}

        return await _call(run, client)

    return router


Body = TypeVar("Body", bound=BaseModel)


async def _json(request: Request, model: type[Body]) -> Body:
    """The JSON body as ``model``; a bad one raises ProxyRefusal (answered by the app's handler)."""
    raw = await request.body()
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if raw and media_type != "application/json":  # no body at all is the empty object
        raise ProxyRefusal(invalid_request("send Content-Type: application/json", status=415))
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]  # name the field, never echo the input
        param = ".".join(str(part) for part in first["loc"]) or None
        raise ProxyRefusal(invalid_request(f"invalid request: {first['msg']}", param)) from None


async def _call(
    work: Callable[[SecureChatClient], dict[str, Any]], client: Callable[[], SecureChatClient]
) -> JSONResponse:
    """Run ``work`` with the SDK off the event loop; SDK failures become OpenAI-shaped errors."""
    try:
        return JSONResponse(await run_in_threadpool(lambda: work(client())), headers={"Cache-Control": "no-store"})
    except DocumentError as refused:
        status = 415 if refused.code.value == "unsupported_document_type" else 413
        return invalid_request(str(refused), "file", status).response()
    except KeyringError as missing:
        return ProxyError(404, "invalid_request_error", "not_found", str(missing)).response()
    except SDK_ERRORS as exc:
        return from_exception(exc).response()


def _encoded(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "float":
        return vector
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def _page(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": False,
    }


def _store_object(store: Collection) -> dict[str, Any]:
    return {
        "id": store.collection_id,
        "object": "vector_store",
        "created_at": int(store.created_at),
        "name": store.name,
        "usage_bytes": store.num_bytes,
        "file_counts": {
            "in_progress": 0,
            "completed": store.num_documents,
            "failed": 0,
            "cancelled": 0,
            "total": store.num_documents,
        },
        "status": "completed",
        "last_active_at": None,
        "expires_after": None,
        "expires_at": None,
        "metadata": {},
    }


def _file_object(file_id: str, vector_store_id: StoreId, num_bytes: int, created_at: int) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "vector_store.file",
        "usage_bytes": num_bytes,
        "created_at": created_at,
        "vector_store_id": vector_store_id,
        "status": "completed",
        "last_error": None,
        "attributes": {},
    }
