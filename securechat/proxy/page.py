"""The chat page the proxy serves at ``/``, and the verification report it shows before anything is sent.

Everything the page needs comes from this process: three static files (no CDN, works offline) and the proxy's
own routes. ``GET /securechat/attestation`` runs the SDK's attestation afresh, the same call that fills the key
cache every chat is sealed to, and reports each verified worker and each refusal; the page sends nothing while
it lists no verified worker. A strict Content-Security-Policy allows only this origin's script, style and
fetches, no inline code, and no framing; the app's ``SameOriginOnly`` refuses requests from other origins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import cache
from importlib.resources import files
from typing import Any, Final

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from securechat.attestation import VerificationReport, VerifiedWorker
from securechat.client import AttestationFailed, SecureChatClient
from securechat.client.errors import ClientError
from securechat.proxy.errors import from_exception
from securechat.suites import Suite

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # for browsers that predate frame-ancestors
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# The only files served: a fixed table, so no request path ever reaches the file system.
ASSETS: Final = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}


@cache
def _asset(name: str) -> bytes:
    return files("securechat.proxy").joinpath("static", name).read_bytes()


def _asset_route(name: str, media_type: str) -> Callable[[], Awaitable[Response]]:
    # A closure without parameters: FastAPI would read a parameter (even a defaulted one) from the query string.
    async def serve() -> Response:
        return Response(_asset(name), media_type=media_type, headers=SECURITY_HEADERS)

    return serve


def page_router(client: Callable[[], SecureChatClient]) -> APIRouter:
    router = APIRouter()

    for path, (name, media_type) in ASSETS.items():
        router.add_api_route(path, _asset_route(name, media_type), methods=["GET"], include_in_schema=False)

    @router.get("/securechat/attestation", include_in_schema=False)
    async def attestation() -> JSONResponse:
        def attest() -> dict[str, Any]:
            sdk = client()
            try:
                report, ok = sdk.attest(), True
            except AttestationFailed as failed:
                report, ok = failed.report, False
            return verification_body(report, ok, sdk)

        try:
            body = await run_in_threadpool(attest)
        except ClientError as exc:  # the service cannot be reached, or a trust file is broken
            error = from_exception(exc)
            return JSONResponse(error.body(), status_code=error.status, headers=SECURITY_HEADERS)
        return JSONResponse(body, headers=SECURITY_HEADERS)

    return router


def verification_body(report: VerificationReport, ok: bool, sdk: SecureChatClient) -> dict[str, Any]:
    """What the page's verification panel shows: ids, registers, expiry, the pinned manifest, refusals.

    ``ok`` is the SDK's verdict (a worker with a key of a suite the client seals with passed); the page sends
    only when it is true. ``sealed_with`` names the suite each worker's prompts are sealed in (None: this client
    seals to none of its keys). Worker ids of refusals are as the documents claim them, unverified.
    """
    config = sdk.config
    pinned = sdk.manifest.manifest
    return {
        "ok": ok and bool(report.verified),
        "service": config.base_url,
        "region": config.region,
        "tenant": config.tenant_id,
        "manifest": {"name": pinned.name, "release": pinned.release},
        "release_log": release_log_entry(sdk),
        "verified": [
            {
                "worker_id": worker.worker_id,
                "expires_at": worker.expires_at,
                "registers": dict(sorted(worker.registers.items())),
                "keys": [{"key_id": key.key_id, "suite": key.suite.value} for key in worker.keys],
                "sealed_with": _sealed_with(worker, config.suites),
                "platform": _platform(worker),
            }
            for worker in report.verified
        ],
        "refused": [
            {
                "index": refusal.index,
                "worker_id": refusal.claimed_worker_id,
                "reason": refusal.reason.value,
                "register": refusal.register,
            }
            for refusal in report.refused
        ],
    }


def _sealed_with(worker: VerifiedWorker, suites: Sequence[Suite]) -> dict[str, Any] | None:
    key = worker.key_for(suites)
    return None if key is None else {"suite": key.suite.value, "post_quantum": key.suite.post_quantum}


def _platform(worker: VerifiedWorker) -> dict[str, Any]:
    """What vouched for the worker: the platform, and whether that is hardware at all."""
    claims = worker.claims
    if claims is None or not claims.platform.hardware:
        return {"name": "simulated", "hardware": False}
    return {
        "name": claims.platform.value,
        "hardware": True,
        "product": claims.product,
        "signer": claims.signer,
        "measurements": dict(claims.measurements),
    }


def release_log_entry(sdk: SecureChatClient) -> dict[str, Any] | None:
    """The log entry the pinned manifest was found at in this attestation, or None when no log is pinned."""
    release = sdk.release
    if release is None:
        return None
    return {
        "origin": release.checkpoint.origin,
        "entry": release.leaf_index,
        "size": release.checkpoint.size,
        "witnesses": list(release.witnesses),
    }
