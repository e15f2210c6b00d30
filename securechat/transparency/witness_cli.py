"""``securechat log witness ...``: run a witness as its own process, with its own key and state.

``init`` makes the key and the state and names the logs to watch; ``serve`` answers c2sp.org/tlog-witness
``POST /add-checkpoint`` over HTTP; ``cosign`` answers one request body offline (file or stdin), for a witness
kept off the network.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from securechat.transparency._cli import USAGE, fail, guarded, read_input
from securechat.transparency.keyfiles import create_note_key, load_note_signer, read_vkey, vkey_path_for
from securechat.transparency.note_keys import SignatureType
from securechat.transparency.paths import default_witness_db_path, default_witness_key_path
from securechat.transparency.witness import AddCheckpointRequest, Witness, WitnessRefusal
from securechat.transparency.witness_http import make_witness_server
from securechat.transparency.witness_state import SqliteWitnessState

__all__ = ["add_witness_commands"]

DEFAULT_PORT = 8790


def _cmd_witness_init(args: argparse.Namespace) -> int:
    key_path: Path = args.key or default_witness_key_path()
    db_path: Path = args.db or default_witness_db_path()
    if db_path.exists():
        return fail(f"{db_path} exists; a witness's state is created once", USAGE)
    logs = [read_vkey(vkey) for vkey in args.log_vkey]
    if any(log_key.signature_type is not SignatureType.ED25519 for log_key in logs):
        return fail("--log-vkey takes a log's key (a plain Ed25519 note key), not a witness's", USAGE)
    verifier = create_note_key(key_path, args.name, SignatureType.COSIGNATURE_V1, force=args.force)
    state = SqliteWitnessState.create(db_path, args.name)
    try:
        for log_key in logs:
            state.trust_log(log_key)
    finally:
        state.close()
    print(f"witness {args.name}: state {db_path}, key {key_path}, watching {', '.join(k.name for k in logs)}")
    print(f"verifier key (clients pin this; also in {vkey_path_for(key_path)}):")
    print(verifier.to_vkey())
    return 0


def _open_witness(args: argparse.Namespace) -> Witness:
    state = SqliteWitnessState(args.db or default_witness_db_path())
    signer = load_note_signer(args.key or default_witness_key_path(), state.name, SignatureType.COSIGNATURE_V1)
    return Witness(signer, state)


def _cmd_witness_cosign(args: argparse.Namespace) -> int:
    witness = _open_witness(args)
    try:
        line = witness.add_checkpoint(AddCheckpointRequest.from_body(read_input(args.file)))
    except WitnessRefusal as refusal:
        latest = f" (last cosigned size {refusal.latest_size})" if refusal.latest_size is not None else ""
        print(f"refused: {refusal.reason.value}{latest}", file=sys.stderr)
        return 1
    sys.stdout.write(line)
    return 0


def _cmd_witness_serve(args: argparse.Namespace) -> int:
    witness = _open_witness(args)
    server = make_witness_server(witness, args.host, args.port)
    host, port = server.server_address[:2]
    print(f"witness {witness.verifier.to_vkey()} on http://{host!s}:{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def add_witness_commands(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = actions.add_parser("witness", help="run an independent witness that cosigns consistent checkpoints")
    witness_actions = group.add_subparsers(metavar="ACTION", required=True)
    db_help = "witness state (default: $SECURECHAT_WITNESS_DB or ~/.local/share/securechat/witness.sqlite3)"
    key_help = "witness key (default: $SECURECHAT_WITNESS_KEY or ~/.config/securechat/witness-key.pem)"

    init = witness_actions.add_parser("init", help="create the witness key and state; print the key clients pin")
    init.add_argument("--name", required=True, help="the witness's key name, e.g. witness.example.org/w1")
    init.add_argument("--log-vkey", action="append", required=True, help="a log to watch (repeatable)")
    init.add_argument("--db", type=Path, help=db_help)
    init.add_argument("--key", type=Path, help=key_help)
    init.add_argument("--force", action="store_true", help="replace an existing key file")
    init.set_defaults(command=guarded(_cmd_witness_init))

    cosign = witness_actions.add_parser("cosign", help="answer one add-checkpoint request body (file or stdin)")
    cosign.add_argument("file", type=Path, nargs="?", help="request body (default: stdin)")
    cosign.add_argument("--db", type=Path, help=db_help)
    cosign.add_argument("--key", type=Path, help=key_help)
    cosign.set_defaults(command=guarded(_cmd_witness_cosign))

    serve = witness_actions.add_parser("serve", help="serve POST /add-checkpoint (c2sp.org/tlog-witness)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--db", type=Path, help=db_help)
    serve.add_argument("--key", type=Path, help=key_help)
    serve.set_defaults(command=guarded(_cmd_witness_serve))
