"""``GET /v1/transparency/...``: the release log, served read-only from its store to anyone (all of it is public).

    /checkpoint                          the newest signed checkpoint note, witness cosignatures included
    /evidence?leaf_hash=&old_size=       what a client checks before sealing (securechat.transparency.evidence)
    /consistency?old_size=&new_size=     a consistency proof between two tree sizes (monitors, witnesses)
    /entries?start=&end=                 the signed manifests at those indices, checked against their leaf hashes

Nothing here is trusted by a client: every answer is checked against the pinned log and witness keys. The
operator appends and signs with ``securechat log ...`` on their own machine; the gateway holds no log key.
Handlers are plain ``def``: FastAPI runs them in its thread pool, so SQLite never blocks the event loop.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse

from securechat.errors import ErrorCode
from securechat.gateway.http_errors import HTTPError
from securechat.gateway.openapi import TRANSPARENCY, errors
from securechat.transparency import LogCorrupted, NoCheckpoint, ReleaseLog, open_log
from securechat.transparency.evidence import encode_hashes
from securechat.transparency.log import MAX_ENTRIES_PER_CALL

router = APIRouter(prefix="/v1/transparency", tags=["transparency"])

# A SHA-256 leaf hash in hex (RFC 6962 leaf: SHA-256(0x00 || the manifest's leaf data)).
LEAF_HASH_PATTERN: Final = r"^[0-9a-f]{64}$"
NOTE_MEDIA_TYPE: Final = "text/plain; charset=utf-8"

Size = Annotated[int, Query(ge=0, le=2**62)]


@contextmanager
def _log(request: Request) -> Iterator[ReleaseLog]:
    configured = request.app.state.service.settings.transparency.log_db
    if configured is None:
        raise HTTPError(ErrorCode.NO_TRANSPARENCY_LOG)
    try:
        log = open_log(Path(os.path.expandvars(configured)).expanduser())
    except FileNotFoundError:
        raise HTTPError(ErrorCode.NO_TRANSPARENCY_LOG) from None
    try:
        with log:
            yield log
    except NoCheckpoint:
        raise HTTPError(ErrorCode.NO_CHECKPOINT) from None
    except LogCorrupted:
        raise HTTPError(ErrorCode.LOG_CORRUPTED) from None


CHECKPOINT_ANSWER: Final[dict[int | str, dict[str, Any]]] = {
    200: {"description": "the signed checkpoint", "content": {"text/plain": {"schema": {"type": "string"}}}}
}


@router.get("/checkpoint", response_model=None, responses={**CHECKPOINT_ANSWER, **errors(TRANSPARENCY)})
def checkpoint(request: Request) -> PlainTextResponse:
    """The newest checkpoint in the C2SP signed-note format (c2sp.org/tlog-checkpoint)."""
    with _log(request) as log:
        return PlainTextResponse(log.latest_checkpoint(), media_type=NOTE_MEDIA_TYPE)


@router.get("/evidence", responses=errors(TRANSPARENCY))
def evidence(
    request: Request,
    leaf_hash: Annotated[str, Query(pattern=LEAF_HASH_PATTERN, description="the manifest's leaf hash")],
    old_size: Size = 0,
) -> dict[str, Any]:
    """Inclusion of ``leaf_hash`` in the newest checkpoint (``leaf_index`` null when absent) and consistency
    from ``old_size``, the tree size the client last accepted."""
    with _log(request) as log:
        return log.evidence(bytes.fromhex(leaf_hash), old_size).to_dict()


@router.get("/consistency", responses=errors(TRANSPARENCY))
def consistency(request: Request, old_size: Size, new_size: Size) -> dict[str, Any]:
    with _log(request) as log:
        if new_size > log.size() or old_size > new_size:
            raise _out_of_range("need old_size <= new_size <= the log's size")
        proof = log.consistency_proof(old_size, new_size)
    return {"old_size": old_size, "new_size": new_size, "proof": encode_hashes(proof)}


@router.get("/entries", responses=errors(TRANSPARENCY))
def entries(request: Request, start: Size, end: Size) -> dict[str, Any]:
    """Entries ``start`` to ``end - 1`` (at most ``MAX_ENTRIES_PER_CALL``, clipped to the tree): each the
    signed manifest exactly as hashed into its leaf."""
    with _log(request) as log:
        end = min(end, log.size())
        if end < start or end - start > MAX_ENTRIES_PER_CALL:
            raise _out_of_range(f"need start <= the log's size and at most {MAX_ENTRIES_PER_CALL} entries")
        data = log.entries(start, end)
    return {"start": start, "entries": [_entry(start + offset, item) for offset, item in enumerate(data)]}


def _entry(index: int, data: bytes) -> dict[str, Any]:
    return {"index": index, "leaf_data": base64.b64encode(data).decode(), "manifest": json.loads(data)}


def _out_of_range(message: str) -> HTTPError:
    return HTTPError(ErrorCode.INVALID_REQUEST, fields=[{"loc": ["query"], "type": "out_of_range", "msg": message}])
