"""The log operator: append signed release manifests, sign checkpoints, serve entries and proofs.

``ReleaseLog`` needs no private key to append, read or prove, so the gateway can serve proofs from the store
alone; only ``sign_checkpoint`` takes the log's ``NoteSigner``, on the operator's machine. Before signing it
checks that the leaves still hash to the last checkpoint it signed: a log must never sign two inconsistent
checkpoints (c2sp.org/tlog-checkpoint), and an edited database is the way that would happen here.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.attestation import SignedManifest
from securechat.logs import get_logger, log_event
from securechat.transparency.checkpoint import Checkpoint
from securechat.transparency.evidence import ReleaseEvidence
from securechat.transparency.leaf import manifest_leaf_data
from securechat.transparency.merkle import consistency_proof, inclusion_proof, leaf_hash, root_hash
from securechat.transparency.note import InvalidNote, NoteSignature, format_note, parse_note
from securechat.transparency.note_keys import NoteSigner, NoteVerifier, SignatureType
from securechat.transparency.store import LogStore, SqliteLogStore, StoredCheckpoint

logger = get_logger("transparency")

DEFAULT_ORIGIN: Final = "securechat.local/releases"  # schema-less URL, as c2sp.org/tlog-checkpoint recommends
MAX_ENTRIES_PER_CALL: Final = 1000
_NOTE_UPDATE_ATTEMPTS: Final = 8


class LogCorrupted(RuntimeError):
    """The stored leaves no longer hash to a checkpoint this log signed: history was rewritten."""


class NoCheckpoint(LookupError):
    """No checkpoint has been signed yet (run ``securechat log checkpoint``)."""


class NotInLog(LookupError):
    """The leaf is not in the tree of the checkpoint asked about."""


class InvalidManifest(ValueError):
    """The manifest is not signed by any of the given release keys."""


def open_log(path: Path | str) -> ReleaseLog:
    """The existing log at ``path`` (``FileNotFoundError`` if there is none: serve nothing rather than empty)."""
    return ReleaseLog(SqliteLogStore(path))


class ReleaseLog:
    def __init__(self, store: LogStore) -> None:
        self.store = store

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> ReleaseLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def origin(self) -> str:
        return self.store.origin

    def size(self) -> int:
        return self.store.size()

    def append(self, signed: SignedManifest, release_keys: Iterable[ed25519.Ed25519PublicKey]) -> int:
        """Add a manifest signed by one of ``release_keys``; its index. ``DuplicateEntry`` if present."""
        if not any(signed.verify(key) for key in release_keys):
            raise InvalidManifest("manifest is not signed by a release key")
        data = manifest_leaf_data(signed)
        index = self.store.append(leaf_hash(data), data)
        log_event(logger, "log_appended")
        return index

    # Checkpoints

    def sign_checkpoint(self, signer: NoteSigner) -> str:
        """A signed checkpoint of the whole tree: the stored one (with its cosignatures) if nothing was added
        since, else a new one. ``LogCorrupted`` if the leaves disagree with the last signed checkpoint."""
        if signer.name != self.origin or signer.verifier.signature_type is not SignatureType.ED25519:
            raise ValueError("the log key's name must be the log's origin, and its type plain Ed25519")
        size = self.store.size()
        hashes = self.store.leaf_hashes(size)
        latest = self.store.latest_checkpoint()
        if latest is not None:
            if latest.size > size or not hmac.compare_digest(root_hash(hashes[: latest.size]), latest.root_hash):
                log_event(logger, "log_corrupted", reason="inconsistent_with_signed_checkpoint")
                raise LogCorrupted("stored leaves are inconsistent with the last signed checkpoint")
            if latest.size == size:
                return latest.note
        root = root_hash(hashes)
        text = Checkpoint(self.origin, size, root).to_text()
        note = format_note(text, [signer.sign(text)])
        self.store.save_checkpoint(StoredCheckpoint(size, root, note))
        log_event(logger, "checkpoint_signed")
        return note

    def latest_checkpoint(self) -> str:
        """The newest signed checkpoint note, cosignatures included: what GET .../checkpoint serves."""
        return self._latest().note

    def checkpoint_at(self, size: int) -> str:
        stored = self.store.checkpoint_at(size)
        if stored is None:
            raise NoCheckpoint("no checkpoint of that size")
        return stored.note

    def add_cosignatures(
        self, size: int, signatures: Iterable[NoteSignature], witnesses: Iterable[NoteVerifier]
    ) -> str:
        """Attach witness cosignatures to the stored checkpoint of ``size``; the updated note.

        Each signature must verify under one of ``witnesses`` (InvalidNote otherwise): the log serves only
        cosignatures it checked. A newer cosignature from the same witness replaces the older one.
        """
        keys = [key for key in witnesses if key.signature_type is SignatureType.COSIGNATURE_V1]
        new = list(signatures)
        for _ in range(_NOTE_UPDATE_ATTEMPTS):  # compare-and-swap: another process may be adding its own
            stored = self.store.checkpoint_at(size)
            if stored is None:
                raise NoCheckpoint("no checkpoint of that size")
            note = parse_note(stored.note)
            for signature in new:
                if not any(key.verify(note.text, signature) for key in keys):
                    raise InvalidNote()
            replaced = {(signature.name, signature.key_id) for signature in new}
            kept = [sig for sig in note.signatures if (sig.name, sig.key_id) not in replaced]
            updated = format_note(note.text, [*kept, *new])
            if self.store.replace_note(size, stored.note, updated):
                return updated
        raise RuntimeError("checkpoint note kept changing; try again")

    # Proofs and entries

    def inclusion_proof(self, leaf: bytes, size: int) -> tuple[int, list[bytes]]:
        """``(index, proof)`` of leaf hash ``leaf`` in the tree of ``size`` leaves; ``NotInLog`` if absent."""
        index = self.store.index_of(leaf)
        if index is None or index >= size:
            raise NotInLog("leaf not in the tree of this size")
        return index, inclusion_proof(self.store.leaf_hashes(size), index)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        if not 0 <= old_size <= new_size:
            raise ValueError("old size must be between 0 and the new size")
        return consistency_proof(self.store.leaf_hashes(new_size), old_size)

    def entries(self, start: int, end: int) -> list[bytes]:
        """Leaf data of entries ``start..end-1`` (at most ``MAX_ENTRIES_PER_CALL``), each checked against its
        stored leaf hash, so a monitor never gets data the tree does not commit to."""
        if start < 0 or end < start or end - start > MAX_ENTRIES_PER_CALL:
            raise ValueError(f"ask for 0 to {MAX_ENTRIES_PER_CALL} entries from a non-negative start")
        rows = self.store.entries(start, end)
        for stored_hash, data in rows:
            if not hmac.compare_digest(leaf_hash(data), stored_hash):
                raise LogCorrupted("a stored entry does not match its leaf hash")
        return [data for _, data in rows]

    def evidence(self, leaf: bytes, old_size: int = 0) -> ReleaseEvidence:
        """Everything a client checks before sealing, against the newest signed checkpoint: the checkpoint,
        the inclusion proof of leaf hash ``leaf`` (leaf_index None if absent) and a consistency proof from the
        ``old_size`` the client last saw (empty when there is nothing to prove or the client is ahead)."""
        if old_size < 0:
            raise ValueError("old size must not be negative")
        stored = self._latest()
        hashes = self.store.leaf_hashes(stored.size)
        if not hmac.compare_digest(root_hash(hashes), stored.root_hash):
            raise LogCorrupted("stored leaves do not hash to the latest checkpoint")
        index = self.store.index_of(leaf)
        present = index is not None and index < stored.size
        return ReleaseEvidence(
            checkpoint=stored.note,
            leaf_index=index if present else None,
            inclusion_proof=tuple(inclusion_proof(hashes, index)) if present and index is not None else (),
            old_size=old_size,
            consistency_proof=tuple(consistency_proof(hashes, old_size)) if old_size <= stored.size else (),
        )

    def _latest(self) -> StoredCheckpoint:
        stored = self.store.latest_checkpoint()
        if stored is None:
            raise NoCheckpoint("no checkpoint signed yet; run `securechat log checkpoint`")
        return stored
