"""Helpers (no tests) for the client, CLI and proxy tests: a real gateway over in-process attested workers,
served by uvicorn on a free port in a background thread, and the trust files a client pins.

Workers are ``EnclaveWorker``s with ``ScriptedEngine`` and real ``Attester``s endorsed by a temp platform root;
the registers they report are chosen by the test, so a manifest can accept or refuse them.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.attestation import (
    Attester,
    ReleaseManifest,
    create_release_key,
    create_root,
    load_release_key,
    load_root,
    save_manifest,
    sign_manifest,
)
from securechat.client import ClientConfig
from securechat.config import AppSettings, RagSettings, RegionSettings, StreamSettings, TransparencySettings
from securechat.dispatcher import InferenceDispatcher
from securechat.engine.base import Engine
from securechat.framing import decode_frames
from securechat.gateway.app import create_app
from securechat.gateway.backend import LocalBackend
from securechat.gateway.service import GatewayService
from securechat.host_limits import HostLimits
from securechat.keys import Suite, WorkerKeys
from securechat.rag.modes import CollectionModes
from securechat.rag.store_client import AsyncDocumentStore
from securechat.stream import MIN_FRAME_BYTES
from securechat.suites import DEFAULT_SUITES
from securechat.tenants.auth import AuthMode, AuthSettings
from securechat.tenants.oidc import IssuerSettings
from securechat.tenants.policy import TenantPolicy
from securechat.tenants.settings import TenantsSettings
from securechat.tenants.store import TenantStore
from securechat.tenants.tenancy import build_tenancy
from securechat.worker import EnclaveWorker
from tests.fakes import FakePool, ScriptedEngine

REGION = "us-west-1"
TENANT = "tenant1"
REGISTERS = {"code": "11" * 32, "config": "22" * 32, "model": "33" * 32}
ANSWER = ("Hello", ", ", "world")
# The smallest frames: a scripted engine answers at once, so its whole answer is one flush, cut into frames of
# FRAME_CAPACITY bytes of text each (deterministic, whatever the machine's timing).
SMALL_FRAMES = StreamSettings(frame_bytes=MIN_FRAME_BYTES)
FRAME_CAPACITY = MIN_FRAME_BYTES - 3


@dataclass
class TrustFiles:
    """A temp platform root, release key and a manifest signed for ``registers``."""

    directory: Path
    root: ed25519.Ed25519PrivateKey

    @classmethod
    def create(
        cls, directory: Path, registers: Mapping[str, str] = REGISTERS, suites: tuple[Suite, ...] = DEFAULT_SUITES
    ) -> TrustFiles:
        directory.mkdir(parents=True, exist_ok=True)
        create_root(directory / "root.pem")
        create_release_key(directory / "release.pem")
        allowed = {k: frozenset({v}) for k, v in registers.items()}
        manifest = ReleaseManifest("securechat", "test", allowed, 0, suites)
        save_manifest(directory / "manifest.json", sign_manifest(manifest, load_release_key(directory / "release.pem")))
        return cls(directory, load_root(directory / "root.pem"))

    @property
    def root_pub(self) -> Path:
        return self.directory / "root.pem.pub"

    @property
    def release_pub(self) -> Path:
        return self.directory / "release.pem.pub"

    @property
    def manifest(self) -> Path:
        return self.directory / "manifest.json"

    def client_config(self, base_url: str, **overrides: Any) -> ClientConfig:
        values: dict[str, Any] = {
            "tenant_id": TENANT,
            "base_url": base_url,
            "region": REGION,
            "root_public_key_path": self.root_pub,
            "release_public_key_path": self.release_pub,
            "manifest_path": self.manifest,
        }
        return ClientConfig(**{**values, **overrides})

    def cli_flags(self, base_url: str) -> list[str]:
        return [
            *("--url", base_url, "--tenant", TENANT, "--region", REGION),
            *("--root-pub", str(self.root_pub), "--release-pub", str(self.release_pub)),
            *("--manifest", str(self.manifest)),
        ]


def make_worker(
    worker_id: str,
    root: ed25519.Ed25519PrivateKey,
    registers: Mapping[str, str] = REGISTERS,
    *,
    debug: bool = False,
    chunks: Sequence[str] = ANSWER,
    stream: StreamSettings = SMALL_FRAMES,
    collections: CollectionModes | None = None,
    engine: Engine | None = None,
    max_new_tokens: int = 8,
    suites: tuple[Suite, ...] = DEFAULT_SUITES,
) -> EnclaveWorker:
    worker = EnclaveWorker(
        worker_id,
        REGION,
        engine or ScriptedEngine(chunks),
        max_new_tokens,
        keys=WorkerKeys.generate(suites),
        attester_factory=lambda identity: Attester.simulated(root, identity, registers, key_ttl_s=3600, debug=debug),
        stream=stream,
        collections=collections,
    )
    asyncio.run(worker.start())
    return worker


class PathCounter:
    """ASGI wrapper counting requests per path: proves what did (not) reach the service."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.paths: Counter[str] = Counter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths[scope["path"]] += 1
        await self.app(scope, receive, send)


@dataclass
class LocalService:
    url: str
    pool: FakePool
    counter: PathCounter
    infer_calls: list[int] = field(default_factory=list)
    store: TenantStore | None = None

    def add_api_key(self, tenant_id: str = TENANT) -> str:
        assert self.store is not None, "serve_gateway(..., tenants_dir=...) requires API keys"
        return self.store.add_key(tenant_id)

    @property
    def paths(self) -> Counter[str]:
        return self.counter.paths

    def replace_worker(self, index: int, worker: EnclaveWorker) -> None:
        """A restarted replica: same slot, new keys, new attestation."""
        self.pool.workers[f"replica-{index}"] = worker


class CountingBackend(LocalBackend):
    def __init__(self, dispatcher: InferenceDispatcher, calls: list[int]) -> None:
        super().__init__(dispatcher)
        self._calls = calls

    def infer(self, envelope: bytes, limits: HostLimits | None = None) -> Any:
        self._calls.append(len(envelope))
        return super().infer(envelope, limits)


Mutation = Callable[[list[bytes]], bytes]


class Tamper(httpx.BaseTransport):
    """A man in the middle on the answer to /infer: rewrites its frames."""

    def __init__(self, mutate: Mutation) -> None:
        self._inner = httpx.HTTPTransport()
        self._mutate = mutate

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if request.url.path != "/infer" or response.status_code != 200:
            return response
        frames = decode_frames(response.read())
        response.close()
        return httpx.Response(200, headers={"content-type": "application/octet-stream"}, content=self._mutate(frames))


@contextmanager
def serve_asgi(app: Any, *, lifespan: Literal["on", "off"] = "off") -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a daemon thread; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class GatewayApp:
    """The gateway's ASGI app over an in-process pool, before it is served."""

    app: Any
    pool: FakePool
    calls: list[int]
    tenancy: Any


@contextmanager
def gateway_app(
    workers: Sequence[EnclaveWorker],
    *,
    tenants_dir: Path | None = None,
    documents: AsyncDocumentStore | None = None,
    rag: RagSettings | None = None,
    default_policy: TenantPolicy | None = None,
    transparency_log: Path | None = None,
    issuers: Sequence[IssuerSettings] = (),
) -> Iterator[GatewayApp]:
    """The gateway over ``workers``; with ``tenants_dir``, API keys are required (store and secret there); with
    ``documents`` (and ``rag`` enabled), the collection routes and modes are served; with ``transparency_log``,
    that release log is served at /v1/transparency/..."""
    pool = FakePool(list(workers))
    calls: list[int] = []
    app = create_app()
    auth = AuthSettings(mode=AuthMode.REQUIRED if tenants_dir else AuthMode.DISABLED, issuers=tuple(issuers))
    directory = tenants_dir or Path("/nonexistent")
    tenants = TenantsSettings(
        store_path=directory / "tenants.db",
        server_secret_path=directory / "secret",
        default_policy=default_policy or TenantPolicy(),
    )
    settings = AppSettings(
        regions=(RegionSettings(name=REGION),),
        auth=auth,
        tenants=tenants,
        rag=rag or RagSettings(),
        transparency=TransparencySettings(log_db=None if transparency_log is None else str(transparency_log)),
    )
    tenancy = build_tenancy(settings.auth, settings.tenants)
    pools: dict[str, Any] = {REGION: pool}  # FakePool is a WorkerPool by shape
    backend = CountingBackend(InferenceDispatcher(pools), calls)
    app.state.service = GatewayService(settings, backend, tenancy, documents=documents)
    try:
        yield GatewayApp(app, pool, calls, tenancy)
    finally:
        tenancy.close()


@contextmanager
def serve_gateway(
    workers: Sequence[EnclaveWorker],
    *,
    tenants_dir: Path | None = None,
    documents: AsyncDocumentStore | None = None,
    rag: RagSettings | None = None,
    default_policy: TenantPolicy | None = None,
    transparency_log: Path | None = None,
    issuers: Sequence[IssuerSettings] = (),
) -> Iterator[LocalService]:
    """``gateway_app`` served on a free port."""
    with gateway_app(
        workers,
        tenants_dir=tenants_dir,
        documents=documents,
        rag=rag,
        default_policy=default_policy,
        transparency_log=transparency_log,
        issuers=issuers,
    ) as built:
        counter = PathCounter(built.app)
        with serve_asgi(counter) as url:
            yield LocalService(url, built.pool, counter, built.calls, built.tenancy.store)


class RecordingTransport(httpx.BaseTransport):
    """Every HTTP body a client sends to and receives from the service (what the host handles on the wire):
    ``sent``, ``received``, and ``traffic`` (both ways, in the order they crossed)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent = bytearray()
        self.received = bytearray()
        self.traffic = bytearray()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        self.sent += body
        self.traffic += body
        response = self.inner.handle_request(request)
        answer = response.read()
        self.received += answer
        self.traffic += answer
        return httpx.Response(response.status_code, headers=response.headers, content=answer)
