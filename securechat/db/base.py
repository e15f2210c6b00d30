"""The database contract: transactions of plain SQL, a dialect, versioned schemas, one error for an outage."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached, or was lost inside a transaction (which then kept nothing).

    The message names the backend and its location (host, port, database; never a password) and the reason
    the driver gave; it never carries a statement's parameters. The HTTP layer answers 503 with Retry-After.
    """


class SchemaError(RuntimeError):
    """The database was written by a newer release (or holds something else under our tables' names)."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """The words that differ between the backends; schemas are written with ``{blob}``, ``{real}``, ``{int}``."""

    name: str
    blob: str
    real: str
    int: str
    for_update: str  # appended to a SELECT that must lock its rows until commit ("" where the whole DB locks)

    def ddl(self, statement: str) -> str:
        return statement.format(blob=self.blob, real=self.real, int=self.int)


@dataclass(frozen=True, slots=True)
class Rows:
    """A statement's result, fetched whole (every query here is bounded by a key or a collection)."""

    rows: list[tuple[Any, ...]]
    rowcount: int

    def one(self) -> tuple[Any, ...]:
        if not self.rows:
            raise LookupError("the statement returned no row")
        return self.rows[0]

    def first(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None


class Transaction(ABC):
    """Statements inside one transaction: all of them are kept, or (on any exception) none."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows: ...

    @abstractmethod
    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None: ...


class Database(ABC):
    """A place for shared state. Thread-safe: stores call it from worker threads, never on an event loop."""

    dialect: Dialect
    location: str  # for messages and logs: no password

    @abstractmethod
    def transaction(self, *, write: bool = True) -> AbstractContextManager[Transaction]:
        """A transaction that commits when the block ends and rolls back if it raises. ``write=False`` may
        let readers run beside a writer; ``SELECT ... {dialect.for_update}`` locks rows where that exists."""

    @abstractmethod
    def migrate(self, component: str, steps: Sequence[Sequence[str]]) -> int:
        """Bring ``component``'s tables to ``len(steps)`` (step i upgrades version i to i + 1), atomically,
        even when several processes start together; refuse (``SchemaError``) a newer version. The version."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
