"""The collection modes of a worker request: what happens between opening the envelope and the first frame.

``CollectionModes.prepare`` parses the sealed body of a ``rag``, ``ingest``, ``search`` or ``embed`` request and
does its retrieval, ingest or embedding before the worker sends anything, so a refusal can still be an error
frame that the gateway turns into an HTTP status: a wrong collection key is the opaque ``invalid_envelope``, a
document the worker will not take is a 413/415, the store's refusals keep their codes. Then ``rag`` becomes a
generation (the excerpts in the prompt, the citations in the sealed trailer) and the other modes an answer that
is all trailer.

The query a RAG request retrieves with is its last user message.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Final

from securechat.db import DatabaseUnavailable
from securechat.envelope import EnvelopeHeader
from securechat.errors import ErrorCode, InvalidCiphertext
from securechat.host_limits import HostLimits
from securechat.rag.bodies import EmbedBody, IngestBody, RagBody, SearchBody
from securechat.rag.manifest import CollectionStateError
from securechat.rag.prompt import citations, with_excerpts
from securechat.rag.service import DocumentRejected, IngestTicket, RagService
from securechat.rag.store import StoreError, StoreLimits
from securechat.request_body import InvalidRequestBody, RequestBody

COLLECTION_MODES: Final = frozenset({"rag", "ingest", "search", "embed"})
_UNLIMITED: Final = 2**62


def _bound(limit: int | None) -> int:
    """A tenant's limit as the store applies it: None (no host limits given) is unlimited, and 0 is zero."""
    return _UNLIMITED if limit is None else limit


class Refused(Exception):
    """Refuse before the first frame, with a code the host may see (content-free)."""

    def __init__(self, code: ErrorCode, invalid: InvalidRequestBody | None = None) -> None:
        super().__init__(code.value)
        self.code = code
        self.invalid = invalid  # a body that names what is wrong with it: refused sealed, to the client only


@dataclass(frozen=True, slots=True)
class Generate:
    body: RequestBody = field(repr=False)  # the conversation with the excerpts in its system message
    trailer: dict[str, Any] = field(default_factory=dict)  # citations and retrieval timings


@dataclass(frozen=True, slots=True)
class Answer:
    result: dict[str, Any] = field(repr=False)
    input_tokens: int = 0


class CollectionModes:
    def __init__(self, rag: RagService) -> None:
        self.rag = rag

    async def prepare(
        self, header: EnvelopeHeader, body: bytes, limits: HostLimits, max_new_tokens: int
    ) -> Generate | Answer:
        """The opened envelope's mode, for its authenticated ``header`` (tenant, mode, request id, expiry)."""
        mode, tenant_id = header.mode, header.tenant_id
        try:
            if mode == "rag":
                return await self._rag(RagBody.from_bytes(body, max_new_tokens), tenant_id)
            if mode == "ingest":
                store_limits = StoreLimits(_bound(limits.max_documents), _bound(limits.max_chunks))
                ticket = IngestTicket(header.request_id, header.expires_at)
                return Answer(await self.rag.ingest(tenant_id, IngestBody.from_bytes(body), store_limits, ticket))
            if mode == "search":
                return await self._search(SearchBody.from_bytes(body), tenant_id)
            if mode == "embed":
                return await self._embed(EmbedBody.from_bytes(body))
        except InvalidRequestBody as invalid:
            raise Refused(ErrorCode.INVALID_REQUEST, invalid if invalid.param else None) from None
        except InvalidCiphertext:  # a wrong collection key: the same opaque refusal as a wrong envelope key
            raise Refused(ErrorCode.INVALID_ENVELOPE) from None
        except DocumentRejected as rejected:
            raise Refused(rejected.code) from None
        except CollectionStateError as refused:  # stale, tampered, or an ingest already applied
            raise Refused(refused.code) from None
        except StoreError as refused:
            raise Refused(refused.code) from None
        except DatabaseUnavailable:  # the store's database is lost: nothing was committed, the client may retry
            raise Refused(ErrorCode.DATABASE_UNAVAILABLE) from None
        raise Refused(ErrorCode.MODE_NOT_SUPPORTED)

    async def _rag(self, body: RagBody, tenant_id: str) -> Generate:
        request = body.request
        query = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        if not query.strip():
            raise InvalidRequestBody("invalid request body")
        retrieval = await self.rag.retrieve(tenant_id, body.collection, query, body.top_k)
        messages = with_excerpts(request.messages, retrieval.hits)
        trailer = {
            "citations": citations(retrieval.hits),
            "retrieval": retrieval.timings.as_dict(),
            "collection": {"counter": retrieval.counter},
        }
        return Generate(replace(request, messages=messages), trailer)

    async def _search(self, body: SearchBody, tenant_id: str) -> Answer:
        retrieval = await self.rag.retrieve(tenant_id, body.collection, body.query, body.top_k)
        results = [
            {
                "doc_id": h.ref.doc_id,
                "chunk_index": h.ref.index,
                "score": round(h.score, 4),
                "text": h.ref.text,
                "page": h.ref.page,
                "heading": h.ref.heading,
            }
            for h in retrieval.hits
        ]
        return Answer({"results": results, "retrieval": retrieval.timings.as_dict(), "counter": retrieval.counter})

    async def _embed(self, body: EmbedBody) -> Answer:
        vectors = await self.rag.embed(body.inputs)
        tokenizer = self.rag.embedder.tokenizer
        num_tokens = sum(len(tokenizer(text, truncation=True, max_length=256)["input_ids"]) for text in body.inputs)
        result = {"embeddings": [[round(float(x), 7) for x in row] for row in vectors], "dimensions": vectors.shape[1]}
        return Answer(result, input_tokens=num_tokens)
