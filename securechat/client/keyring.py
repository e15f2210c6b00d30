"""The client's keyring: collection keys kept on the user's machine, never given to the service in the clear.

A JSON file (default ``~/.config/securechat/keyring.json``, or ``$SECURECHAT_KEYRING``), mode 0600. Every change
is a read-modify-write under an exclusive lock, written durably and atomically (``securechat.state_files``), so
the CLI, the proxy's threads and other processes of the user lose no key, a shredded key cannot come back, and a
crash never leaves the file empty. Each entry: collection id, tenant, the 256-bit key (base64), a local name,
when it was made, and ``counter``: the newest state of the collection this keyring has seen (its authenticated
manifest's counter, ``securechat.rag.manifest``); workers refuse to answer from an older state. ``export`` gives
one entry as a line of JSON for another machine of the same tenant (it contains the secret: move it like a
private key); ``import_entry`` takes it back. Forgetting a key (``remove``) makes the collection's blobs
unreadable for good: crypto-shredding.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from securechat import state_files
from securechat.client.errors import ClientError
from securechat.envelope import is_valid_id
from securechat.rag.keys import CollectionKey, InvalidCollectionKey

KEYRING_ENV: Final = "SECURECHAT_KEYRING"
DEFAULT_KEYRING_PATH: Final = Path("~/.config/securechat/keyring.json")
_FORMAT: Final = "securechat-keyring/1"
_EXPORT_FORMAT: Final = "securechat-collection-key/1"


class KeyringError(ClientError):
    """The keyring file is unreadable or has no key for a collection (the message names which, never a key)."""


def default_keyring_path(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get(KEYRING_ENV) or DEFAULT_KEYRING_PATH).expanduser()


@dataclass(frozen=True, slots=True)
class KeyringEntry:
    collection_id: str
    tenant_id: str
    key: CollectionKey = field(repr=False)
    name: str = ""
    created_at: float = 0.0
    counter: int = 0  # the newest collection state seen; only ever moves forward

    def __post_init__(self) -> None:
        valid_counter = isinstance(self.counter, int) and not isinstance(self.counter, bool) and self.counter >= 0
        if not (is_valid_id(self.collection_id) and is_valid_id(self.tenant_id) and valid_counter):
            raise KeyringError("a keyring entry is malformed")

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection_id": self.collection_id,
            "tenant_id": self.tenant_id,
            "key": self.key.to_b64(),
            "name": self.name,
            "created_at": self.created_at,
            "counter": self.counter,
        }

    @classmethod
    def from_dict(cls, data: Any) -> KeyringEntry:
        try:
            return cls(
                collection_id=data["collection_id"],
                tenant_id=data["tenant_id"],
                key=CollectionKey.from_b64(data["key"]),
                name=str(data.get("name", "")),
                created_at=float(data.get("created_at", 0.0)),
                counter=data.get("counter", 0),  # absent in keyrings written before collections had manifests
            )
        except (KeyError, TypeError, ValueError, InvalidCollectionKey):
            raise KeyringError("a keyring entry is malformed") from None


class Keyring:
    def __init__(self, path: Path | None = None) -> None:
        self.path = (path or default_keyring_path()).expanduser()

    def entries(self) -> list[KeyringEntry]:
        """Every entry; an absent keyring is empty (and reading it creates nothing)."""
        return list(self._load().values())

    def get(self, collection_id: str) -> KeyringEntry:
        entry = self._load().get(collection_id)
        if entry is None:
            raise KeyringError(f"no key for collection {collection_id} in {self.path}")
        return entry

    def add(self, collection_id: str, tenant_id: str, key: CollectionKey, name: str = "") -> KeyringEntry:
        """Keep a new collection's key. An id this keyring already holds is refused: overwriting it would make
        that collection's documents unreadable."""
        entry = KeyringEntry(collection_id, tenant_id, key, name, time.time())  # refuses an invalid id
        with state_files.locked(self.path):
            entries = self._load()
            if collection_id in entries:
                raise KeyringError(f"the keyring {self.path} already holds a key for collection {collection_id}")
            self._save({**entries, collection_id: entry})
        return entry

    def remove(self, collection_id: str) -> bool:
        with state_files.locked(self.path):
            entries = self._load()
            if entries.pop(collection_id, None) is None:
                return False
            self._save(entries)
        return True

    def advance(self, collection_id: str, counter: int) -> KeyringEntry:
        """Record that the collection's state ``counter`` was seen; the kept counter never moves back."""
        with state_files.locked(self.path):
            entries = self._load()
            entry = entries.get(collection_id)
            if entry is None:
                raise KeyringError(f"no key for collection {collection_id} in {self.path}")
            if counter > entry.counter:
                entry = replace(entry, counter=counter)
                self._save({**entries, collection_id: entry})
        return entry

    def export(self, collection_id: str) -> str:
        return json.dumps({"format": _EXPORT_FORMAT, **self.get(collection_id).to_dict()})

    def import_entry(self, text: str) -> KeyringEntry:
        """Take an exported key. The same key again only moves the counter forward; another key for an id this
        keyring holds is refused."""
        try:
            data = json.loads(text)
        except ValueError:
            raise KeyringError("not an exported collection key") from None
        if not isinstance(data, dict) or data.get("format") != _EXPORT_FORMAT:
            raise KeyringError("not an exported collection key")
        entry = KeyringEntry.from_dict(data)
        with state_files.locked(self.path):
            entries = self._load()
            held = entries.get(entry.collection_id)
            if held is not None:
                if held.key != entry.key or held.tenant_id != entry.tenant_id:
                    raise KeyringError(
                        f"the keyring {self.path} holds another key for collection {entry.collection_id}"
                    )
                entry = replace(held, counter=max(held.counter, entry.counter))
            self._save({**entries, entry.collection_id: entry})
        return entry

    def _load(self) -> dict[str, KeyringEntry]:
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError:
            raise KeyringError(f"cannot read the keyring {self.path}") from None
        try:
            data = json.loads(raw)
        except ValueError:
            raise KeyringError(f"the keyring {self.path} is not valid JSON") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("entries"), list):
            raise KeyringError(f"the keyring {self.path} is not a SecureChat keyring")
        entries = [KeyringEntry.from_dict(item) for item in data["entries"]]
        return {entry.collection_id: entry for entry in entries}

    def _save(self, entries: Mapping[str, KeyringEntry]) -> None:
        data = {"format": _FORMAT, "entries": [entry.to_dict() for entry in entries.values()]}
        state_files.write_atomically(self.path, (json.dumps(data, indent=1) + "\n").encode())
