"""The witness over HTTP (c2sp.org/tlog-witness ``POST /add-checkpoint``): a tiny server and the log's client.

The server is the standard library's threading HTTP server: one endpoint, bodies of a few kilobytes, and a
witness that should run as its own small process with as few dependencies as possible. The client is what a
log operator runs after signing a checkpoint: it sends the checkpoint with a consistency proof from the size
the witness last cosigned (learning that size from the 409 answer when it guessed wrong) and attaches the
returned cosignature to the stored checkpoint.
"""

from __future__ import annotations

import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

import httpx

from securechat.transparency.checkpoint import Checkpoint
from securechat.transparency.log import ReleaseLog
from securechat.transparency.note import InvalidNote, parse_note, parse_signature_lines
from securechat.transparency.note_keys import NoteVerifier
from securechat.transparency.witness import (
    MAX_REQUEST_BYTES,
    AddCheckpointRequest,
    Witness,
    WitnessFailure,
    WitnessRefusal,
)

ADD_CHECKPOINT_PATH: Final = "/add-checkpoint"
SIZE_CONTENT_TYPE: Final = "text/x.tlog.size"
DEFAULT_TIMEOUT_S: Final = 10.0
_SIZE_BODY: Final = re.compile(r"(0|[1-9][0-9]{0,18})\n")


class WitnessServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], witness: Witness) -> None:
        self.witness = witness
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: WitnessServer
    protocol_version = "HTTP/1.1"  # keep-alive, as the spec asks; every response carries a Content-Length

    def do_POST(self) -> None:  # the name http.server dispatches to
        if self.path != ADD_CHECKPOINT_PATH:
            self._reply(404, "not found\n")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_REQUEST_BYTES:
            self.close_connection = True  # the unread body would be taken for the next request
            self._reply(413 if length > MAX_REQUEST_BYTES else 411, "bad content length\n")
            return
        body = self.rfile.read(length)
        try:
            line = self.server.witness.add_checkpoint(AddCheckpointRequest.from_body(body))
        except WitnessRefusal as refusal:
            if refusal.reason is WitnessFailure.OLD_SIZE_MISMATCH:
                self._reply(refusal.status_code, f"{refusal.latest_size}\n", SIZE_CONTENT_TYPE)
            else:
                self._reply(refusal.status_code, f"{refusal.reason.value}\n")
            return
        self._reply(200, line)

    def do_GET(self) -> None:
        self._reply(405, "use POST /add-checkpoint\n")

    def _reply(self, status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the witness logs its own content-free events; stderr request lines add nothing


def make_witness_server(witness: Witness, host: str = "127.0.0.1", port: int = 0) -> WitnessServer:
    """A server bound to ``host:port`` (0: any free port, see ``server_address``); call ``serve_forever``."""
    return WitnessServer((host, port), witness)


class WitnessError(RuntimeError):
    """A witness did not cosign. ``status_code`` is its HTTP status (0 if it could not be reached)."""

    def __init__(self, status_code: int, reason: str) -> None:
        self.status_code = status_code
        self.reason = reason
        super().__init__(f"witness did not cosign: {status_code} {reason}")


def cosign_with_witness(
    log: ReleaseLog,
    url: str,
    witness_key: NoteVerifier,
    *,
    old_size: int = 0,
    client: httpx.Client | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> str:
    """Ask the witness at ``url`` (its submission prefix) to cosign the log's latest checkpoint; attach the
    cosignature and return the updated note. ``old_size`` is a guess of what the witness last cosigned: a wrong
    guess costs one more round trip. ``WitnessError`` if the witness refuses or answers nonsense."""
    note = log.latest_checkpoint()
    checkpoint = Checkpoint.from_text(parse_note(note).text)
    endpoint = url.rstrip("/") + ADD_CHECKPOINT_PATH
    guess = min(old_size, checkpoint.size)
    http = client or httpx.Client(timeout=timeout_s)
    try:
        for _ in range(2):
            proof = tuple(log.consistency_proof(guess, checkpoint.size))
            body = AddCheckpointRequest(guess, proof, note).to_body()
            try:
                response = http.post(endpoint, content=body, headers={"Content-Type": "text/plain"})
            except httpx.HTTPError:
                raise WitnessError(0, "unreachable") from None
            if response.status_code == 200:
                return _attach(log, checkpoint.size, response.text, witness_key)
            witness_size = _reported_size(response)
            if witness_size is None or witness_size == guess or witness_size > checkpoint.size:
                break
            guess = witness_size
    finally:
        if client is None:
            http.close()
    raise WitnessError(response.status_code, response.text.strip()[:64] or "refused")


def _attach(log: ReleaseLog, size: int, text: str, witness_key: NoteVerifier) -> str:
    try:
        lines = [signature for signature in parse_signature_lines(text) if witness_key.matches(signature)]
        if not lines:
            raise WitnessError(200, "no cosignature by the expected key")
        return log.add_cosignatures(size, lines, [witness_key])
    except InvalidNote:
        raise WitnessError(200, "invalid cosignature") from None


def _reported_size(response: httpx.Response) -> int | None:
    # Only a 409 typed as a tree size says what the witness last cosigned; anything else is a refusal.
    if response.status_code != 409 or response.headers.get("Content-Type", "").split(";")[0] != SIZE_CONTENT_TYPE:
        return None
    match = _SIZE_BODY.fullmatch(response.text)
    return None if match is None else int(match.group(1))
