"""``securechat tenants ...``: add, list and revoke API keys, and set per-tenant policy overrides.

``add`` prints the new key on stdout, alone, so it can be piped into a secret manager; everything else goes to
stderr. The key is shown once: only its HMAC digest is stored, so a lost key is revoked and replaced, never
recovered. The store and secret paths default to ``TenantsSettings``' defaults, so the CLI and a gateway
started with default settings use the same files; ``--database-url`` (a cluster's ``database.url``) manages the
keys in PostgreSQL instead, with the server secret file every gateway node mounts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from securechat.db import DatabaseSettings, open_database
from securechat.tenants.policy import PolicyOverride
from securechat.tenants.settings import DEFAULT_SERVER_SECRET_PATH, DEFAULT_STORE_PATH
from securechat.tenants.store import TenantStore

__all__ = ["add_tenant_commands"]


def _open(args: argparse.Namespace) -> TenantStore:
    if args.database_url is None:
        return TenantStore(args.db, args.server_secret)
    database = open_database(DatabaseSettings(url=args.database_url), args.db)
    try:
        return TenantStore(database, args.server_secret, owns_database=True)
    except BaseException:
        database.close()
        raise


def _no_database(args: argparse.Namespace) -> Path | None:
    """The SQLite file a read-only command would have to create (it never does), or None."""
    database = Path(args.db).expanduser()
    return database if args.database_url is None and not database.exists() else None


def _refused_without_secret(args: argparse.Namespace) -> bool:
    """On PostgreSQL a read-only command needs the server secret every gateway mounts (the store checks it
    against the fingerprint in the database) and never makes a fresh one: says so and returns True without it."""
    secret = Path(args.server_secret).expanduser()
    if args.database_url is None or secret.exists():
        return False
    print(f"error: no server secret at {secret} (use the file every gateway node mounts)", file=sys.stderr)
    return True


def _cmd_add(args: argparse.Namespace) -> int:
    with _open(args) as store:
        try:
            key = store.add_key(args.tenant_id)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    key_id = key.split("_")[1]
    print(f"New API key for tenant {args.tenant_id} (key id {key_id}).", file=sys.stderr)
    print("WARNING: this is the only time the key is shown; it is not stored. Save it now.", file=sys.stderr)
    print(key)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    if _refused_without_secret(args):
        return 2
    if (database := _no_database(args)) is not None:
        print(f"no tenant database at {database} (tenants add creates it)", file=sys.stderr)
        return 0
    with _open(args) as store:
        tenants = [args.tenant_id] if args.tenant_id else store.list_tenants()
        print(f"{'TENANT':<24} {'KEY_ID':<16} {'CREATED (UTC)':<20} STATUS")
        for tenant_id in tenants:
            for key in store.list_keys(tenant_id):
                created = key.created_at.strftime("%Y-%m-%d %H:%M:%S")
                status = "revoked" if key.revoked else "active"
                print(f"{tenant_id:<24} {key.key_id:<16} {created:<20} {status}")
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    if _refused_without_secret(args):
        return 2
    if (database := _no_database(args)) is not None:
        print(f"error: no tenant database at {database}", file=sys.stderr)
        return 2
    with _open(args) as store:
        if not store.revoke(args.key_id):
            print(f"error: no active key with id {args.key_id!r}", file=sys.stderr)
            return 1
    print(f"Revoked key {args.key_id}.", file=sys.stderr)
    return 0


def _cmd_policy(args: argparse.Namespace) -> int:
    if args.set is None and not args.clear:  # only showing: read-only
        if _refused_without_secret(args):
            return 2
        if _no_database(args) is not None:
            print("{}")  # showing a policy that cannot exist yet creates nothing
            return 0
    with _open(args) as store:
        if args.clear:
            store.set_policy(args.tenant_id, None)
        elif args.set is not None:
            try:
                store.set_policy(args.tenant_id, PolicyOverride.model_validate_json(args.set))
            except (ValidationError, ValueError) as error:
                print(f"error: invalid policy: {error}", file=sys.stderr)
                return 2
        override = store.get_policy(args.tenant_id)
        print(override.model_dump_json(exclude_unset=True) if override is not None else "{}")
    return 0


def add_tenant_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tenants`` with its own subcommands; each sets ``command`` to a function returning an exit code."""
    tenants = subparsers.add_parser("tenants", help="manage tenants' API keys and policy overrides")
    tenants.add_argument("--db", type=Path, default=DEFAULT_STORE_PATH, help="tenant database (SQLite) path")
    tenants.add_argument(
        "--database-url",
        metavar="URL",
        help="the cluster's PostgreSQL (database.url: postgresql://user@host:5432/db) instead of --db",
    )
    tenants.add_argument(
        "--server-secret",
        type=Path,
        default=DEFAULT_SERVER_SECRET_PATH,
        help="server secret file keying the key digests (0600; created if missing)",
    )
    commands = tenants.add_subparsers(metavar="ACTION", required=True)

    add = commands.add_parser("add", help="create an API key for a tenant and print it once")
    add.add_argument("tenant_id", metavar="TENANT")
    add.set_defaults(command=_cmd_add)

    listing = commands.add_parser("list", help="list key ids, creation times and status (never secrets)")
    listing.add_argument("tenant_id", metavar="TENANT", nargs="?")
    listing.set_defaults(command=_cmd_list)

    revoke = commands.add_parser("revoke", help="revoke an API key by its key id")
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.set_defaults(command=_cmd_revoke)

    policy = commands.add_parser("policy", help="show, set (JSON) or clear a tenant's stored policy override")
    policy.add_argument("tenant_id", metavar="TENANT")
    group = policy.add_mutually_exclusive_group()
    group.add_argument("--set", metavar="JSON", help='e.g. {"requests_per_minute": 30, "allowed_regions": ["eu-1"]}')
    group.add_argument("--clear", action="store_true", help="remove the stored override")
    policy.set_defaults(command=_cmd_policy)
