"""The gateway's and the proxy's OpenAPI documents are true: schemathesis generates requests from each one
(every operation, valid and invalid data, all its checks, a fixed seed, a bounded number of examples per
operation) against the app in-process, and every answer must be a documented status, with a body that fits the
documented schema, and never a 5xx.

The gateway serves in-process workers, collections (a SQLite store) and no release log; the proxy's SDK talks
to such a gateway over loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from securechat.client import SecureChatClient
from securechat.client.keyring import Keyring
from securechat.config import RagSettings
from securechat.proxy import create_proxy_app
from securechat.rag.embedder import MiniLMEmbedder
from securechat.rag.store import SQLiteDocumentStore
from securechat.rag.store_client import LocalDocumentStore
from tests.client_harness import LocalService, TrustFiles, gateway_app, make_worker
from tests.fakes import ScriptedEngine
from tests.rag_harness import serve_rag

EXAMPLES = 20
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same examples on every run: a failure here is reproducible
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> TrustFiles:
    return TrustFiles.create(tmp_path_factory.mktemp("trust"))


def documents(tmp_path_factory: pytest.TempPathFactory) -> LocalDocumentStore:
    return LocalDocumentStore(SQLiteDocumentStore(tmp_path_factory.mktemp("docs") / "documents.sqlite3"))


@pytest.fixture(scope="module")
def gateway(trust: TrustFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    store = documents(tmp_path_factory)
    with gateway_app([make_worker("w0", trust.root)], documents=store, rag=RagSettings(enabled=True)) as built:
        yield built.app


@pytest.fixture(scope="module")
def proxy(trust: TrustFiles, embedder: MiniLMEmbedder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The proxy over a service with collections (its worker embeds, ingests and searches)."""
    keyring = tmp_path_factory.mktemp("keyring") / "keyring.json"
    store = SQLiteDocumentStore(tmp_path_factory.mktemp("docs") / "documents.sqlite3")
    with serve_rag(trust, embedder, store, ScriptedEngine()) as service:
        yield create_proxy_app(lambda: client(service, trust, keyring), allowed_hosts=("testserver",))


def client(service: LocalService, trust: TrustFiles, keyring: Any) -> SecureChatClient:
    return SecureChatClient(trust.client_config(service.url), keyring=Keyring(keyring))


# Schema-valid data must be accepted (2xx), or refused for a reason the document cannot state: auth (401/403),
# a resource that is not there (404), state (409), limits (429). One more for each app, and why:
# the gateway's envelopes are checked cryptographically (400 invalid_envelope) and some rules span fields
# (exactly one of prompt or envelope; a mode's collection: 422); the proxy passes the gateway's refusals on
# and checks tool and schema semantics beyond JSON Schema (400, e.g. a tool_choice naming no tool), and an
# uploaded file's type from its name (415 for one that is not .txt or .md).
ACCEPTED = ["2xx", "401", "403", "404", "409", "429"]
ALSO_ACCEPTED = {"SecureChat gateway": ["400", "422"], "SecureChat local proxy": ["400", "415"]}


def fuzz(app: Any, mode: GenerationMode, answered: dict[str, set[int]] | None = None) -> list[str]:
    """Every operation of ``app``'s document, fuzzed; the failures, one line each (and, in ``answered``, the
    statuses each operation gave)."""
    accepted = ACCEPTED + ALSO_ACCEPTED[app.title]
    config = SchemathesisConfig.from_dict({"checks": {"positive_data_acceptance": {"expected-statuses": accepted}}})
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for operation in operations:
        check = _checker(operation, mode, (answered if answered is not None else {}).setdefault(operation.label, set()))
        try:
            check()
        except Unsatisfiable:
            continue  # invalid data cannot be made for an operation that takes nothing: nothing to fuzz
        except Exception as failure:  # schemathesis raises one error naming the check and the answer
            failures.append(f"{operation.label}: {failure}")
    return failures


def _checker(operation: Any, mode: GenerationMode, statuses: set[int]) -> Any:
    """A Hypothesis test of ``operation``: each case called, every check applied, its status kept."""

    @given(case=operation.as_strategy(mode))
    @FUZZ
    def check(case: schemathesis.Case) -> None:
        statuses.add(case.call_and_validate().status_code)

    return check


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_the_gateway_answers_as_its_document_says(gateway: Any, mode: GenerationMode) -> None:
    answered: dict[str, set[int]] = {}
    failures = fuzz(gateway, mode, answered)
    assert failures == [], "\n\n".join(failures)
    if mode is GenerationMode.POSITIVE:  # valid data got through somewhere: the fuzzing reached the service
        assert 201 in answered["POST /v1/collections"] and 200 in answered["GET /v1/workers"]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_the_proxy_answers_as_its_document_says(proxy: Any, mode: GenerationMode) -> None:
    answered: dict[str, set[int]] = {}
    failures = fuzz(proxy, mode, answered)
    assert failures == [], "\n\n".join(failures)
    if mode is GenerationMode.POSITIVE:  # generated chats and embeddings went all the way to a worker
        assert 200 in answered["POST /v1/chat/completions"] and 200 in answered["POST /v1/embeddings"]
