"""Fresh reports from the confidential VM's firmware through Linux's configfs-tsm interface (kernel 6.7 and later).

One report per attestation request (Documentation/ABI/testing/configfs-tsm-report)::

    mkdir /sys/kernel/config/tsm/report/<name>      a report request of our own
    read  <name>/generation                          before
    write <name>/inblob                              the 64 bytes of report data
    read  <name>/outblob                             the report (SNP: 1,184 bytes) or quote (TDX), made now
    read  <name>/auxblob                             SNP: the certificate table, when the host provides one
    read  <name>/provider                            "sev_guest" or "tdx_guest"
    read  <name>/generation                          after: exactly one write later, or another writer
                                                     changed the request between our write and our read
    rmdir <name>

File access goes through ``TsmFiles`` so tests can drive the collector against a fake configfs directory.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

DEFAULT_ROOT: Final = Path("/sys/kernel/config/tsm/report")
PROVIDERS: Final = {"sev_guest": "sev-snp", "tdx_guest": "tdx"}
MAX_BLOB_BYTES: Final = 1 << 20


class TsmError(RuntimeError):
    """No report: the interface is missing or refused, or another writer raced this request."""


@dataclass(frozen=True, slots=True)
class TsmReport:
    provider: str  # "sev_guest" or "tdx_guest"
    outblob: bytes = field(repr=False)
    auxblob: bytes = field(repr=False)


class TsmFiles(Protocol):
    def mkdir(self, path: Path) -> None: ...

    def rmdir(self, path: Path) -> None: ...

    def read(self, path: Path) -> bytes: ...

    def write(self, path: Path, data: bytes) -> None: ...

    def exists(self, path: Path) -> bool: ...


class OsFiles:
    """The real configfs: plain file operations (each attribute read or written whole, in one call)."""

    def mkdir(self, path: Path) -> None:
        os.mkdir(path)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def read(self, path: Path) -> bytes:
        with path.open("rb", buffering=0) as handle:
            return handle.read(MAX_BLOB_BYTES)

    def write(self, path: Path, data: bytes) -> None:
        with path.open("wb", buffering=0) as handle:
            handle.write(data)

    def exists(self, path: Path) -> bool:
        return path.exists()


class ReportCollector(Protocol):
    """Where a worker's evidence sources get reports: configfs-tsm, or an emulated platform."""

    def report(self, inblob: bytes) -> TsmReport: ...


class ConfigfsTsm:
    def __init__(self, root: Path = DEFAULT_ROOT, files: TsmFiles | None = None) -> None:
        self.root = root
        self._files: TsmFiles = files or OsFiles()

    def available(self) -> bool:
        return self._files.exists(self.root)

    def report(self, inblob: bytes) -> TsmReport:
        files = self._files
        entry = self.root / f"securechat-{uuid.uuid4().hex}"
        try:
            files.mkdir(entry)
        except OSError as exc:
            raise TsmError(f"cannot create a configfs-tsm report request: {type(exc).__name__}") from None
        try:
            before = _generation(files.read(entry / "generation"))
            files.write(entry / "inblob", inblob)
            outblob = files.read(entry / "outblob")
            auxblob = files.read(entry / "auxblob") if files.exists(entry / "auxblob") else b""
            provider = files.read(entry / "provider").decode("ascii", "replace").strip()
            after = _generation(files.read(entry / "generation"))
        except OSError as exc:
            raise TsmError(f"configfs-tsm refused the report request: {type(exc).__name__}") from None
        finally:
            with contextlib.suppress(OSError):
                files.rmdir(entry)
        if after != before + 1:
            raise TsmError("another writer changed the report request: its report is not ours")
        if provider not in PROVIDERS or not outblob:
            raise TsmError("configfs-tsm answered no report of a known provider")
        return TsmReport(provider, outblob, auxblob)


def _generation(raw: bytes) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise TsmError("unreadable configfs-tsm generation") from None
