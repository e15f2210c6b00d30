"""The SDK's typed errors. Messages carry ids, codes and reasons only, never request or response content.

Crypto failures are not here: a tampered, reordered or truncated response raises
``securechat.errors.InvalidCiphertext`` (one opaque error, no oracle), and an error frame from the service
raises ``securechat.response.ResponseFailed`` with its code.
"""

from __future__ import annotations

from securechat.attestation import Refusal, VerificationReport


class ClientError(Exception):
    """Base class of the SDK's own errors."""


class ConfigError(ClientError):
    """The client configuration or a trust file (pinned root, release key, manifest) is missing or invalid."""


class AttestationFailed(ClientError):
    """No worker of the region passed attestation, so nothing was sealed and nothing was sent."""

    def __init__(self, region: str, report: VerificationReport, *, detail: str | None = None) -> None:
        self.region = region
        self.report = report
        self.refusals: tuple[Refusal, ...] = report.refused
        reasons = "; ".join(describe_refusal(refusal) for refusal in report.refused)
        if detail is None:
            detail = (
                f"{len(report.refused)} refused: {reasons}"
                if reasons
                else "the service offered no attestation document"
            )
        super().__init__(f"no worker in region {region} passed attestation ({detail})")

    @property
    def reasons(self) -> list[str]:
        return [refusal.reason.value for refusal in self.refusals]


class ReleaseNotLogged(ClientError):
    """The pinned manifest could not be shown to be in the pinned release log (with its witnesses' cosignatures
    and consistent with what this client saw before), so nothing was sealed and nothing was sent.

    ``reason`` is a ``securechat.transparency.TransparencyFailure`` value, or ``log_unavailable`` when the service
    served no evidence at all (then ``status`` and ``code`` say what it answered).
    """

    def __init__(self, reason: str, *, status: int | None = None, code: str | None = None) -> None:
        self.reason = reason
        self.status = status
        self.code = code
        answered = f" ({code}, HTTP {status})" if code is not None else ""
        super().__init__(f"the release manifest was refused by the transparency check: {reason}{answered}")


class ServiceError(ClientError):
    """The service answered with an error (``status`` and its ``code``), or could not be reached (status None)."""

    def __init__(
        self,
        status: int | None,
        code: str,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.request_id = request_id
        where = f"HTTP {status}" if status is not None else "no answer"
        hint = f", retry after {retry_after:g} s" if retry_after is not None else ""
        super().__init__(f"service error {code} ({where}{hint})")


def describe_refusal(refusal: Refusal) -> str:
    """``#index (claimed worker id): reason[:register]``; the worker id is as claimed, not verified."""
    who = refusal.claimed_worker_id or "unparsed document"
    reason = f"{refusal.reason.value}:{refusal.register}" if refusal.register else refusal.reason.value
    return f"#{refusal.index} ({who}): {reason}"
