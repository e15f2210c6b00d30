"""``securechat log ...``: run the release log, check a release as a client would, and run a witness.

Log operator: ``init`` (key + database), ``append`` (a signed manifest), ``checkpoint`` (sign the tree head and
collect witness cosignatures over HTTP), ``prove`` (the evidence JSON a client checks); ``witness-request`` and
``cosign`` are the offline path to a witness. Client: ``verify``. Witness operator: ``witness ...``, in
``witness_cli``. Results go to stdout; errors to stderr, one line, with the exit codes of securechat/cli_exit.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from securechat.attestation import load_manifest, load_release_public
from securechat.attestation._keyfile import public_path_for
from securechat.attestation.manifest import default_release_key_path
from securechat.transparency._cli import FAILED, USAGE, fail, guarded, read_input
from securechat.transparency.checkpoint import Checkpoint
from securechat.transparency.client_check import ReleaseVerifier, TransparencyError, TrustPolicy
from securechat.transparency.evidence import ReleaseEvidence
from securechat.transparency.keyfiles import create_note_key, load_note_signer, read_vkey, vkey_path_for
from securechat.transparency.last_seen import FileLastSeen
from securechat.transparency.leaf import manifest_leaf_hash
from securechat.transparency.log import DEFAULT_ORIGIN, open_log
from securechat.transparency.note import parse_note, parse_signature_lines
from securechat.transparency.note_keys import SignatureType
from securechat.transparency.paths import default_last_seen_path, default_log_db_path, default_log_key_path
from securechat.transparency.store import DuplicateEntry, SqliteLogStore
from securechat.transparency.witness import AddCheckpointRequest
from securechat.transparency.witness_cli import add_witness_commands
from securechat.transparency.witness_http import WitnessError, cosign_with_witness

__all__ = ["add_log_commands"]


# Log operator


def _cmd_init(args: argparse.Namespace) -> int:
    key_path: Path = args.key or default_log_key_path()
    db_path: Path = args.db or default_log_db_path()
    if db_path.exists():
        return fail(f"{db_path} exists; a log is created once", USAGE)
    verifier = create_note_key(key_path, args.origin, SignatureType.ED25519, force=args.force)
    SqliteLogStore.create(db_path, args.origin).close()
    print(f"log {args.origin}: database {db_path}, key {key_path}")
    print(f"verifier key (clients and witnesses pin this; also in {vkey_path_for(key_path)}):")
    print(verifier.to_vkey())
    return 0


def _cmd_append(args: argparse.Namespace) -> int:
    signed = load_manifest(args.manifest)
    release_keys = [load_release_public(path) for path in args.release_pub or [_default_release_pub()]]
    with open_log(args.db or default_log_db_path()) as log:
        try:
            index = log.append(signed, release_keys)
        except DuplicateEntry as duplicate:
            return fail(f"manifest already in the log at index {duplicate.index}", FAILED)
    print(f"appended {signed.manifest.name} {signed.manifest.release} at index {index}")
    print(f"leaf hash {manifest_leaf_hash(signed).hex()}")
    return 0


def _cmd_checkpoint(args: argparse.Namespace) -> int:
    with open_log(args.db or default_log_db_path()) as log:
        signer = load_note_signer(args.key or default_log_key_path(), log.origin, SignatureType.ED25519)
        note = log.sign_checkpoint(signer)
        for url, vkey in args.witness or []:
            try:
                note = cosign_with_witness(log, url, read_vkey(vkey))
            except WitnessError as error:
                print(note, end="")
                return fail(f"witness {url}: {error} (the checkpoint above is signed and stored)", FAILED)
    print(note, end="")
    return 0


def _cmd_prove(args: argparse.Namespace) -> int:
    signed = load_manifest(args.manifest)
    with open_log(args.db or default_log_db_path()) as log:
        evidence = log.evidence(manifest_leaf_hash(signed), args.old_size)
    print(json.dumps(evidence.to_dict(), indent=1))
    if evidence.leaf_index is None:
        return fail("this manifest is not in the latest checkpoint (append it, then run `log checkpoint`)", FAILED)
    return 0


def _cmd_witness_request(args: argparse.Namespace) -> int:
    with open_log(args.db or default_log_db_path()) as log:
        note = log.latest_checkpoint()
        size = Checkpoint.from_text(parse_note(note).text).size
        if not 0 <= args.old_size <= size:
            return fail(f"old size must be between 0 and the checkpoint size {size}", USAGE)
        request = AddCheckpointRequest(args.old_size, tuple(log.consistency_proof(args.old_size, size)), note)
    sys.stdout.write(request.to_body().decode())
    return 0


def _cmd_cosign(args: argparse.Namespace) -> int:
    signatures = parse_signature_lines(read_input(args.file).decode())
    witnesses = [read_vkey(vkey) for vkey in args.witness_vkey]
    with open_log(args.db or default_log_db_path()) as log:
        note = log.latest_checkpoint()
        size = Checkpoint.from_text(parse_note(note).text).size
        ours = [signature for signature in signatures if any(key.matches(signature) for key in witnesses)]
        if not ours:
            return fail("no cosignature by the given witness keys", FAILED)
        print(log.add_cosignatures(size, ours, witnesses), end="")
    return 0


# Client


def _cmd_verify(args: argparse.Namespace) -> int:
    signed = load_manifest(args.manifest)
    evidence = ReleaseEvidence.from_dict(json.loads(read_input(args.evidence)))
    witnesses = tuple(read_vkey(vkey) for vkey in args.witness_vkey or [])
    required = len(witnesses) if args.min_witnesses is None else args.min_witnesses
    policy = TrustPolicy(read_vkey(args.log_vkey), witnesses, required)
    verifier = ReleaseVerifier(policy, FileLastSeen(args.state or default_last_seen_path()))
    try:
        release = verifier.verify(signed, evidence)
    except TransparencyError as error:
        print(f"refused: {error.reason.value}", file=sys.stderr)
        return 1
    cosigners = ", ".join(release.witnesses) or "no witness"
    print(
        f"accepted: {signed.manifest.name} {signed.manifest.release} is leaf {release.leaf_index} of "
        f"{release.checkpoint.origin} at size {release.checkpoint.size}, cosigned by {cosigners}"
    )
    return 0


def _default_release_pub() -> Path:
    return public_path_for(default_release_key_path())


def add_log_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``log`` with its subcommands; each sets ``command`` to a function returning an exit code."""
    group = subparsers.add_parser("log", help="the release transparency log, its witnesses, and client checks")
    actions = group.add_subparsers(metavar="ACTION", required=True)
    db_help = "log database (default: $SECURECHAT_LOG_DB or ~/.local/share/securechat/transparency-log.sqlite3)"
    key_help = "log signing key (default: $SECURECHAT_LOG_KEY or ~/.config/securechat/log-key.pem)"

    init = actions.add_parser("init", help="create the log's key and database; print the key clients pin")
    init.add_argument("--origin", default=DEFAULT_ORIGIN, help=f"the log's origin line (default: {DEFAULT_ORIGIN})")
    init.add_argument("--db", type=Path, help=db_help)
    init.add_argument("--key", type=Path, help=key_help)
    init.add_argument("--force", action="store_true", help="replace an existing key file")
    init.set_defaults(command=guarded(_cmd_init))

    append = actions.add_parser("append", help="append a signed release manifest (its signature is checked)")
    append.add_argument("manifest", type=Path)
    append.add_argument("--db", type=Path, help=db_help)
    append.add_argument(
        "--release-pub", type=Path, action="append", help="release public key(s) (default: the release key's .pub)"
    )
    append.set_defaults(command=guarded(_cmd_append))

    checkpoint = actions.add_parser("checkpoint", help="sign the tree head, collect cosignatures, print the note")
    checkpoint.add_argument("--db", type=Path, help=db_help)
    checkpoint.add_argument("--key", type=Path, help=key_help)
    checkpoint.add_argument(
        "--witness", nargs=2, action="append", metavar=("URL", "VKEY"), help="a witness to ask (repeatable)"
    )
    checkpoint.set_defaults(command=guarded(_cmd_checkpoint))

    prove = actions.add_parser("prove", help="print the evidence JSON (checkpoint, inclusion, consistency)")
    prove.add_argument("manifest", type=Path)
    prove.add_argument("--db", type=Path, help=db_help)
    prove.add_argument("--old-size", type=int, default=0, help="tree size the client last saw (default 0)")
    prove.set_defaults(command=guarded(_cmd_prove))

    verify = actions.add_parser("verify", help="check a manifest against evidence as a client would")
    verify.add_argument("manifest", type=Path)
    verify.add_argument("--evidence", type=Path, required=True, help="evidence JSON from `log prove` ('-': stdin)")
    verify.add_argument("--log-vkey", required=True, help="the log's verifier key")
    verify.add_argument("--witness-vkey", action="append", help="a pinned witness's verifier key (repeatable)")
    verify.add_argument("--min-witnesses", type=int, help="cosignatures required (default: every pinned witness)")
    verify.add_argument(
        "--state", type=Path, help="last-seen checkpoints (default: $SECURECHAT_LOG_STATE or ~/.local/share/...)"
    )
    verify.set_defaults(command=guarded(_cmd_verify))

    request = actions.add_parser("witness-request", help="print an add-checkpoint request body for a witness")
    request.add_argument("--db", type=Path, help=db_help)
    request.add_argument("--old-size", type=int, default=0, help="size the witness last cosigned (default 0)")
    request.set_defaults(command=guarded(_cmd_witness_request))

    cosign = actions.add_parser("cosign", help="attach witness cosignature lines to the latest checkpoint")
    cosign.add_argument("file", type=Path, nargs="?", help="cosignature lines (default: stdin)")
    cosign.add_argument("--db", type=Path, help=db_help)
    cosign.add_argument("--witness-vkey", action="append", required=True, help="accepted witness key (repeatable)")
    cosign.set_defaults(command=guarded(_cmd_cosign))

    add_witness_commands(actions)
