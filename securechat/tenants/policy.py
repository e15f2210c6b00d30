"""What each tenant may do: limits and regions, from config defaults, config overrides and the database.

Precedence, lowest first: ``default_policy`` in config, ``policies[tenant]`` in config, the tenant's row in the
tenant database. Overrides are partial: only the fields they set replace the ones below them, and setting
``allowed_regions`` to null explicitly means "all regions". A database override that fails validation raises
instead of silently falling back to defaults: a region restriction must never be dropped by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from securechat.tenants.ids import is_id

MAX_NEW_TOKENS_CAP = 32768  # the HTTP schema's own bound on max_new_tokens


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_regions(regions: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if regions is not None and not all(is_id(region) for region in regions):
        raise ValueError("region names are short identifiers")
    return regions


Regions = Annotated[tuple[str, ...] | None, AfterValidator(_check_regions)]


class TenantPolicy(_Frozen):
    """The effective limits for one tenant. ``allowed_regions`` None means every region served here."""

    allowed_regions: Regions = None
    max_concurrent_streams: int = Field(default=8, ge=1)
    requests_per_minute: int = Field(default=120, ge=1)
    tokens_per_minute: int = Field(default=200_000, ge=1)
    max_prompt_tokens: int = Field(default=8192, ge=1)
    max_new_tokens: int = Field(default=1024, ge=1, le=MAX_NEW_TOKENS_CAP)
    max_documents: int = Field(default=1000, ge=0)  # across all the tenant's collections
    max_chunks: int = Field(default=100_000, ge=0)  # likewise

    def allows_region(self, region: str) -> bool:
        return self.allowed_regions is None or region in self.allowed_regions


class PolicyOverride(_Frozen):
    """A partial policy: the fields that were set replace the base policy's; the rest are inherited."""

    allowed_regions: Regions = None
    max_concurrent_streams: int | None = Field(default=None, ge=1)
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    max_prompt_tokens: int | None = Field(default=None, ge=1)
    max_new_tokens: int | None = Field(default=None, ge=1, le=MAX_NEW_TOKENS_CAP)
    max_documents: int | None = Field(default=None, ge=0)
    max_chunks: int | None = Field(default=None, ge=0)

    def updates(self) -> dict[str, Any]:
        """The fields that were set, explicit nulls included (a null limit other than regions is ignored)."""
        fields = self.model_dump(exclude_unset=True)
        return {k: v for k, v in fields.items() if v is not None or k == "allowed_regions"}

    def apply_to(self, base: TenantPolicy) -> TenantPolicy:
        return TenantPolicy.model_validate({**base.model_dump(), **self.updates()})


class PolicySource(Protocol):
    """Where per-tenant overrides are stored at run time (the tenant database)."""

    def get_policy(self, tenant_id: str) -> PolicyOverride | None: ...


class PolicyResolver:
    """Resolves a tenant's effective policy; one database read per call, so edits apply to the next request."""

    def __init__(
        self,
        defaults: TenantPolicy,
        configured: Mapping[str, PolicyOverride] | None = None,
        source: PolicySource | None = None,
    ) -> None:
        self.defaults = defaults
        self.configured = dict(configured or {})
        self.source = source

    def resolve(self, tenant_id: str) -> TenantPolicy:
        policy = self.defaults
        configured = self.configured.get(tenant_id)
        if configured is not None:
            policy = configured.apply_to(policy)
        stored = self.source.get_policy(tenant_id) if self.source is not None else None
        if stored is not None:
            policy = stored.apply_to(policy)
        return policy
