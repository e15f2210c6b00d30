"""``securechat collections ...`` and ``securechat docs ...``: collections whose keys never leave this machine.

Keys live in the local keyring (``--keyring``, default ``$SECURECHAT_KEYRING`` or
``~/.config/securechat/keyring.json``, 0600). ``collections export`` prints a key (a secret: move it like a
private key) for ``collections import`` on another machine of the same tenant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from securechat.client.cli import client_options, config_from_args
from securechat.client.collections import DocumentFile
from securechat.client.keyring import Keyring
from securechat.client.sdk import SecureChatClient

_Command = Callable[[argparse.Namespace], int]


def _keyring(args: argparse.Namespace) -> Keyring:
    return Keyring(args.keyring)


def _client(args: argparse.Namespace) -> SecureChatClient:
    return SecureChatClient(config_from_args(args), keyring=_keyring(args))


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cmd_create(args: argparse.Namespace) -> int:
    with _client(args) as client:
        collection = client.collections.create(args.name or "")
    print(f"{collection.collection_id}  {collection.name}".rstrip())
    print(f"key saved in {client.keyring.path}", file=sys.stderr)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        collections = client.collections.list_all()
    for c in collections:
        key = "" if c.has_key else "  (no key here)"
        print(
            f"{c.collection_id}  {c.name or '-'}  {c.num_documents} documents  {c.num_chunks} chunks  "
            f"{c.num_bytes} bytes  {_when(c.created_at)}{key}"
        )
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.collections.delete(args.collection_id, forget_key=not args.keep_key)
    print(f"deleted {args.collection_id}" + ("" if args.keep_key else " and forgot its key"))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    line = _keyring(args).export(args.collection_id)
    if args.out is None:
        print(line)
    else:
        args.out.write_text(line + "\n")
        args.out.chmod(0o600)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if str(args.file) == "-" else args.file.read_text()
    entry = _keyring(args).import_entry(text)
    print(f"imported the key of {entry.collection_id} ({entry.name or 'unnamed'})")
    return 0


def _cmd_docs_add(args: argparse.Namespace) -> int:
    files = [DocumentFile.from_path(path) for path in args.files]  # refused here before anything is sent
    remaining = iter(files)
    with _client(args) as client:
        for written in client.collections.add_in_batches(args.collection_id, files):
            for item in written:  # printed as each batch lands
                print(f"{item['doc_id']}  {next(remaining).filename}  {item['num_chunks']} chunks", flush=True)
    return 0


def _cmd_docs_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        documents = client.collections.documents(args.collection_id)
    for d in documents:  # every figure but the date is the worker's, sealed in the document's metadata
        print(
            f"{d.doc_id}  {d.filename}  {d.media_type}  {d.num_bytes} bytes  {d.num_chunks} chunks  v{d.version}"
            f"  {_when(d.created_at)}"
        )
    return 0


def _cmd_docs_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.collections.delete_document(args.collection_id, args.doc_id)
    print(f"deleted {args.doc_id}")
    return 0


def add_collection_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    options = client_options()
    keyring = argparse.ArgumentParser(add_help=False)
    keyring.add_argument("--keyring", type=Path, help="keyring file (default: $SECURECHAT_KEYRING or ~/.config/...)")

    collections = subparsers.add_parser("collections", help="create, list, delete, export and import collections")
    actions = collections.add_subparsers(metavar="ACTION", required=True)
    create = actions.add_parser("create", parents=[options, keyring], help="a new collection and its key")
    create.add_argument("--name", help="a local name (kept in the keyring; the service never sees it)")
    create.set_defaults(command=_cmd_create)
    listing = actions.add_parser("list", parents=[options, keyring], help="the tenant's collections")
    listing.set_defaults(command=_cmd_list)
    delete = actions.add_parser("delete", parents=[options, keyring], help="delete every blob, forget the key")
    delete.add_argument("collection_id")
    delete.add_argument("--keep-key", action="store_true", help="keep the key in the keyring")
    delete.set_defaults(command=_cmd_delete)
    export = actions.add_parser("export", parents=[keyring], help="print a collection's key for another machine")
    export.add_argument("collection_id")
    export.add_argument("--out", type=Path, help="write it to this file (0600) instead of stdout")
    export.set_defaults(command=_cmd_export)
    importer = actions.add_parser("import", parents=[keyring], help="add an exported key to this keyring")
    importer.add_argument("file", type=Path, help='the exported key ("-" reads stdin)')
    importer.set_defaults(command=_cmd_import)

    docs = subparsers.add_parser("docs", help="add, list and delete a collection's documents")
    doc_actions = docs.add_subparsers(metavar="ACTION", required=True)
    add = doc_actions.add_parser(
        "add", parents=[options, keyring], help="seal text/markdown files to the workers, which index them"
    )
    add.add_argument("collection_id")
    add.add_argument("files", nargs="+", type=Path, help=".txt or .md files (UTF-8)")
    add.set_defaults(command=_cmd_docs_add)
    doc_list = doc_actions.add_parser("list", parents=[options, keyring], help="documents, names opened locally")
    doc_list.add_argument("collection_id")
    doc_list.set_defaults(command=_cmd_docs_list)
    doc_delete = doc_actions.add_parser("delete", parents=[options, keyring], help="delete one document")
    doc_delete.add_argument("collection_id")
    doc_delete.add_argument("doc_id")
    doc_delete.set_defaults(command=_cmd_docs_delete)
