"""Typed application settings: what serve_config.yaml's ``args`` and the files in configs/ contain."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from securechat.db.settings import DatabaseSettings
from securechat.envelope import is_valid_id
from securechat.stream import DEFAULT_FRAME_BYTES, DEFAULT_USAGE_BUCKET_TOKENS, MAX_FRAME_BYTES, MIN_FRAME_BYTES
from securechat.suites import DEFAULT_SUITES, Suite
from securechat.tenants.auth import AuthSettings
from securechat.tenants.settings import TenantsSettings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineSettings(_Strict):
    """Which model runtime each worker runs: "hf" (the prototype's way: generate + streamer, one request at a
    time), "batched" (continuous batching, CUDA graphs on a GPU) or "module:Class" for an injected engine."""

    kind: str = "hf"
    model: str = "securechat/tiny-qwen2"
    dtype: Literal["fp16", "bf16", "fp32"] = "fp32"
    quantization: Literal["none", "int8"] = "none"
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    device: str = "auto"
    max_input_tokens: int = Field(default=2048, ge=1)
    max_new_tokens: int = Field(default=128, ge=1, le=32768)
    disable_eos: bool = False
    options: dict[str, Any] = Field(default_factory=dict)  # extra keyword arguments for an injected engine
    # kind "batched" only:
    max_batch_size: int = Field(default=64, ge=1, le=1024)
    max_model_len: int | None = Field(default=None, ge=2)  # None: max_input_tokens + max_new_tokens
    kv_cache_tokens: int | None = Field(default=None, ge=1)  # None: sized from free memory
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    use_cuda_graphs: bool = True
    core: Literal["process", "thread"] = "process"  # where the model steps: its own process (no shared GIL)
    torch_threads: int | None = Field(default=None, ge=1)  # None: torch's default (Ray sets it from num_cpus)

    @property
    def max_concurrent_requests(self) -> int:
        """How many requests one worker runs at once (the worker queues the rest)."""
        return self.max_batch_size if self.kind == "batched" else int(self.options.get("max_concurrent_requests", 1))


class RegionSettings(_Strict):
    """One region's worker pool. ``num_replicas`` is the builder's default; serve_config.yaml's
    ``deployments:`` entry for ``Worker-<name>`` overrides it (that is where operators scale)."""

    name: str
    num_replicas: int = Field(default=1, ge=1)
    engine: EngineSettings | None = None  # overrides the app-wide engine for this region

    @field_validator("name")
    @classmethod
    def _name_is_an_id(cls, value: str) -> str:
        if not is_valid_id(value):
            raise ValueError("region names are short identifiers")
        return value


def sealed_ingest_bytes(document_bytes: int) -> int:
    """The HTTP body of an ingest of one ``document_bytes`` document at most: its bytes base64 in the sealed
    JSON, that ciphertext base64 again in the envelope (16/9), and room for the envelope and its fields."""
    return -(-document_bytes * 16 // 9) + (64 << 10)


class GatewaySettings(_Strict):
    max_prompt_chars: int = Field(default=32_000, ge=1)
    max_envelope_bytes: int = Field(default=4 << 20, ge=1024)  # the HTTP body (>= sealed_ingest_bytes)
    key_directory_ttl_s: float = Field(default=2.0, ge=0)
    retry_after_s: int = Field(default=1, ge=1)
    # GET /v1/attestation is anonymous and each fresh nonce is a broadcast to every worker: per gateway replica
    attestations_per_minute: int = Field(default=600, ge=1)


class SealingSettings(_Strict):
    """How requests are sealed to workers (securechat.suites). Every worker makes one key pair per suite listed;
    ``securechat manifest build`` writes exactly these into the release manifest, so clients seal to no other;
    the gateway seals plain prompts to each worker's key of the first suite it offers. The default is the
    post-quantum hybrid alone. Listing ``hpke-x25519-...`` or ``rsa3072-oaep-...`` too is a compatibility
    setting for old clients: what is sealed with them can be opened later by whoever recorded the traffic and
    has a quantum computer by then.

    Every worker runs an envelope at most once, and only until the ``expires_at`` its header names
    (``securechat.replay``): it refuses envelopes claiming to live longer than ``envelope_max_ttl_s`` and
    remembers up to ``replay_cache_entries`` envelopes (beyond that it refuses the oldest-expiring ones)."""

    suites: tuple[Suite, ...] = DEFAULT_SUITES
    envelope_max_ttl_s: int = Field(default=600, ge=10, le=86_400)
    replay_cache_entries: int = Field(default=100_000, ge=100, le=10_000_000)

    @field_validator("suites")
    @classmethod
    def _suites_are_unique(cls, value: tuple[Suite, ...]) -> tuple[Suite, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError("sealing.suites must be a non-empty list of unique suites")
        return value


class DispatchSettings(_Strict):
    max_attempts: int = Field(default=4, ge=1, le=32)
    choose_timeout_s: float = Field(default=30.0, gt=0)  # waiting for a free worker slot, then 503 overloaded
    max_in_flight: int = Field(default=1024, ge=1)  # per orchestrator replica; beyond it, 503 overloaded
    worker_max_queued_requests: int = Field(default=256, ge=-1)  # Serve's router queue per worker deployment
    drain_timeout_s: float = Field(default=120.0, gt=0)  # a worker being removed finishes its streams first


class StreamSettings(_Strict):
    """How answers leave a worker (securechat.pacing, securechat.stream): the host sees only how many frames of
    one size leave, and when. The first text leaves at once; later text every ``flush_interval_ms`` and at the
    end; every frame's plaintext is padded to ``frame_bytes``. ``constant_rate`` also sends a frame of padding
    on ticks with no new text, so between the first text and the end the cadence shows nothing of the engine."""

    # 250 ms: at 64 streams on 2 cores, 100 ms spent a third of the CPU on relaying frames and 500 ms gained
    # nothing more (make bench-serving, benchmarks/results/serving/README.md).
    flush_interval_ms: float = Field(default=250.0, gt=0, le=10_000)
    frame_bytes: int = DEFAULT_FRAME_BYTES
    # On by default: it cost nothing measurable at 1, 16 or 64 streams (benchmarks/results/serving), and it keeps
    # the engine's stalls (queueing, other requests' prefill) out of what the host sees.
    constant_rate: bool = True
    # The grain of every token count the host sees (the final frame's clear counts, which limits and billing
    # use, and the worker's metrics and logs): rounded up to a multiple of this. 1 gives exact counts.
    usage_bucket_tokens: int = Field(default=DEFAULT_USAGE_BUCKET_TOKENS, ge=1, le=1 << 16)

    @field_validator("frame_bytes")
    @classmethod
    def _frame_fits_the_final_metrics(cls, value: int) -> int:
        if not MIN_FRAME_BYTES <= value <= MAX_FRAME_BYTES:
            raise ValueError(
                f"frame_bytes must be between {MIN_FRAME_BYTES} (the final frame's metrics must fit in one frame)"
                f" and {MAX_FRAME_BYTES} (a frame's text length is 16 bits)"
            )
        return value

    @property
    def flush_interval_s(self) -> float:
        return self.flush_interval_ms / 1000


class RagSettings(_Strict):
    """Collections (securechat.rag): sealed documents that only worker replicas read. ``enabled`` loads the
    embedder (all-MiniLM-L6-v2, ~90 MB) in every worker and adds the modes rag, ingest, search and embed."""

    enabled: bool = False
    regions: tuple[str, ...] | None = None  # the regions whose workers serve collections; None: every region
    # The store's SQLite file (~ and $VARS expand); with database.url set, the store is in PostgreSQL instead.
    store_path: str = "~/.local/share/securechat/documents.sqlite3"
    max_document_bytes: int = Field(default=1 << 20, ge=1, le=16 << 20)
    chunk_tokens: int = Field(default=200, ge=16, le=254)  # embedder word pieces; 256 minus [CLS] and [SEP]
    overlap_tokens: int = Field(default=40, ge=0)
    cache_bytes: int = Field(default=256 << 20, ge=0)  # decrypted collections a worker keeps in memory
    cache_idle_s: float = Field(default=300.0, gt=0)
    retrieval: Literal["hybrid", "dense"] = "hybrid"  # BM25 and dense fused, or the dense ranking alone
    # Each PDF, Word or HTML document is parsed in a child process within these (docs/collections.md).
    parse_time_s: float = Field(default=30.0, gt=0, le=600)
    parse_memory_mb: int = Field(default=1024, ge=64, le=16384)

    @model_validator(mode="after")
    def _overlap_below_half(self) -> RagSettings:
        if self.overlap_tokens >= self.chunk_tokens // 2:
            raise ValueError("rag.overlap_tokens must be below half of rag.chunk_tokens")
        return self


class TransparencySettings(_Strict):
    """The release log (securechat.transparency) the gateway serves at ``GET /v1/transparency/...``: public
    data (signed manifests, checkpoints, proofs) that clients check before sealing. None: not served."""

    log_db: str | None = None  # the log's SQLite file (`securechat log init`); ~ and $VARS expand


class AttestationSettings(_Strict):
    """Where a worker's evidence comes from (securechat.attestation.platforms; docs/confidential-vms.md).

    ``platform``: ``simulated`` (a software root on the host: development; every shipped CPU profile),
    ``emulated-sev-snp`` (byte-exact SEV-SNP reports from an emulated AMD-SP whose keys are on the host:
    development and CI, checked by the production verifier), ``sev-snp`` and ``tdx`` (a confidential VM's
    firmware through configfs-tsm), ``auto`` (the CVM's firmware when the guest has one, else simulated)."""

    platform: Literal["simulated", "emulated-sev-snp", "sev-snp", "tdx", "auto"] = "simulated"
    root_key_path: str | None = None  # simulated: None is $SECURECHAT_PLATFORM_ROOT or ~/.config/.../platform-root.pem
    emulator_dir: str | None = None  # emulated-sev-snp: None is $SECURECHAT_SNP_EMULATOR or ~/.config/.../snp-emulator
    configfs_tsm_path: str = "/sys/kernel/config/tsm/report"  # sev-snp, tdx
    snp_vcek_path: str | None = None  # sev-snp: the VCEK (DER or PEM) when the host provides no certificate table
    tdx_collateral_path: str | None = None  # tdx: the operator's cache of Intel's collateral (JSON), sent along
    key_ttl_s: int = Field(default=86_400, ge=60)  # worker keys expire this long after start-up
    debug: bool = False  # simulated and emulated: attest a debuggable guest (verifiers refuse it)


class AppSettings(_Strict):
    regions: tuple[RegionSettings, ...] = (RegionSettings(name="us-west-1"),)
    engine: EngineSettings = EngineSettings()
    gateway: GatewaySettings = GatewaySettings()
    sealing: SealingSettings = SealingSettings()
    dispatch: DispatchSettings = DispatchSettings()
    stream: StreamSettings = StreamSettings()
    attestation: AttestationSettings = AttestationSettings()
    auth: AuthSettings = AuthSettings()  # required by default; `mode: disabled` is a development setting
    tenants: TenantsSettings = TenantsSettings()
    rag: RagSettings = RagSettings()
    database: DatabaseSettings = DatabaseSettings()  # unset: SQLite files per node; a cluster sets url
    transparency: TransparencySettings = TransparencySettings()

    @model_validator(mode="after")
    def _regions_are_unique(self) -> AppSettings:
        names = [region.name for region in self.regions]
        if not names or len(set(names)) != len(names):
            raise ValueError("regions must be a non-empty list of unique names")
        named = set(self.tenants.default_policy.allowed_regions or ())
        for override in self.tenants.policies.values():
            named.update(override.allowed_regions or ())
        if not named <= set(names):
            raise ValueError("tenant policies name regions that are not configured")
        if not set(self.rag.regions or ()) <= set(names):
            raise ValueError("rag.regions names regions that are not configured")
        if self.rag.enabled and self.gateway.max_envelope_bytes < sealed_ingest_bytes(self.rag.max_document_bytes):
            raise ValueError(
                "gateway.max_envelope_bytes must fit one document of rag.max_document_bytes as a sealed ingest "
                f"(at least {sealed_ingest_bytes(self.rag.max_document_bytes)} bytes)"
            )
        return self

    def serves_collections(self, region: str) -> bool:
        return self.rag.enabled and (self.rag.regions is None or region in self.rag.regions)

    def modes_for(self, region: str) -> tuple[str, ...]:
        return ("plain", "rag", "ingest", "search", "embed") if self.serves_collections(region) else ("plain",)

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(region.name for region in self.regions)

    def engine_for(self, region: str) -> EngineSettings:
        for candidate in self.regions:
            if candidate.name == region:
                return candidate.engine or self.engine
        raise KeyError(region)
