"""Release transparency: an append-only Merkle log of signed release manifests, its witnesses and the client check."""

from securechat.transparency.checkpoint import Checkpoint
from securechat.transparency.client_check import (
    ReleaseVerifier,
    TransparencyError,
    TransparencyFailure,
    TrustPolicy,
    VerifiedRelease,
)
from securechat.transparency.evidence import ReleaseEvidence
from securechat.transparency.keyfiles import create_note_key, load_note_signer, read_vkey
from securechat.transparency.last_seen import FileLastSeen, LastSeenCorrupt, LastSeenStore, MemoryLastSeen
from securechat.transparency.leaf import manifest_from_leaf, manifest_leaf_data, manifest_leaf_hash
from securechat.transparency.log import (
    DEFAULT_ORIGIN,
    InvalidManifest,
    LogCorrupted,
    NoCheckpoint,
    NotInLog,
    ReleaseLog,
    open_log,
)
from securechat.transparency.merkle import InvalidProof
from securechat.transparency.note import InvalidNote
from securechat.transparency.note_keys import NoteSigner, NoteVerifier, SignatureType
from securechat.transparency.paths import default_last_seen_path, default_log_db_path
from securechat.transparency.store import DuplicateEntry, LogStore, SqliteLogStore
from securechat.transparency.witness import AddCheckpointRequest, Witness, WitnessFailure, WitnessRefusal
from securechat.transparency.witness_http import WitnessError, cosign_with_witness, make_witness_server
from securechat.transparency.witness_state import SqliteWitnessState, WitnessState

__all__ = [
    "DEFAULT_ORIGIN",
    "AddCheckpointRequest",
    "Checkpoint",
    "DuplicateEntry",
    "FileLastSeen",
    "InvalidManifest",
    "InvalidNote",
    "InvalidProof",
    "LastSeenCorrupt",
    "LastSeenStore",
    "LogCorrupted",
    "LogStore",
    "MemoryLastSeen",
    "NoCheckpoint",
    "NotInLog",
    "NoteSigner",
    "NoteVerifier",
    "ReleaseEvidence",
    "ReleaseLog",
    "ReleaseVerifier",
    "SignatureType",
    "SqliteLogStore",
    "SqliteWitnessState",
    "TransparencyError",
    "TransparencyFailure",
    "TrustPolicy",
    "VerifiedRelease",
    "Witness",
    "WitnessError",
    "WitnessFailure",
    "WitnessRefusal",
    "WitnessState",
    "cosign_with_witness",
    "create_note_key",
    "default_last_seen_path",
    "default_log_db_path",
    "load_note_signer",
    "make_witness_server",
    "manifest_from_leaf",
    "manifest_leaf_data",
    "manifest_leaf_hash",
    "open_log",
    "read_vkey",
]
