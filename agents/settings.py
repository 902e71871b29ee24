"""All configuration, read once from the environment in an entry point and passed down.

An agent the orchestrator starts is handed the orchestrator's :class:`Settings` whole, as one
JSON value (:meth:`Settings.handoff_json`, read back by :meth:`Settings.from_handoff`): what it
runs with is exactly what the orchestrator runs with, including values given as CLI flags, and
whatever the agent's own environment says. An agent started by hand (``python -m
agentmem.agents``, ``agentmem agent``, on any host) reads its settings from its environment.
"""

from __future__ import annotations

import json
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentmem.memory import InvalidConfigError, Limits, MemoryConfig, redact


class Settings(BaseSettings):
    """Settings for the orchestrator and every agent process (env prefix ``AGENTMEM_``,
    except the standard ``REDIS_URL``, ``DATABASE_URL`` and ``OPENAI_*`` names)."""

    model_config = SettingsConfigDict(env_prefix="AGENTMEM_", extra="ignore", populate_by_name=True)

    redis_url: SecretStr | None = Field(default=None, validation_alias="REDIS_URL")
    database_url: SecretStr | None = Field(default=None, validation_alias="DATABASE_URL")
    # a streaming replica for reads that tolerate lag (inspect, report); never migrated
    database_read_url: SecretStr | None = Field(default=None, validation_alias="DATABASE_READ_URL")
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=3600)  # Redis and PostgreSQL
    command_timeout_seconds: float = Field(default=5.0, gt=0, le=3600)  # each command / query
    max_fact_bytes: int = Field(default=1024 * 1024, ge=1)  # a fact's text, and its metadata
    max_event_bytes: int = Field(default=1024 * 1024, ge=1)  # one event's payload
    max_document_bytes: int = Field(default=1024 * 1024, ge=1)  # one document version

    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    llm_model: str = Field(default="gpt-4o-mini", validation_alias="OPENAI_MODEL")
    llm: str = Field(default="auto", pattern="^(auto|stub|openai)$")
    llm_timeout_seconds: float | None = Field(default=None, gt=0)  # per request; None: per task
    llm_max_attempts: int = Field(default=4, ge=1, le=10)
    # LLM calls in flight at once across the whole run (every agent process, on any host)
    llm_max_concurrency: int = Field(default=4, ge=1, le=256)
    llm_queue_timeout_seconds: float = Field(default=600.0, gt=0)  # wait for a place, at most
    log_prompts: bool = False
    stub_delay_seconds: float = Field(default=0.0, ge=0, le=60)  # simulated LLM latency

    heartbeat_seconds: float = Field(default=2.0, gt=0)
    status_ttl_seconds: int = Field(default=10, ge=1)
    lock_ttl_seconds: int = Field(default=10, ge=1)  # renewed every third while held
    reclaim_idle_ms: int = Field(default=5_000, ge=100)  # live workers keep theirs claimed
    max_deliveries: int = Field(default=5, ge=1)
    # Sources one researcher extracts at once. Extraction mostly waits for the LLM, and every
    # call also waits for a place under llm_max_concurrency (run-wide), which is what protects
    # the endpoint; this only bounds one process's work in flight.
    research_concurrency: int = Field(default=32, ge=1, le=256)
    review_rounds: int = Field(default=3, ge=1, le=10)

    run_timeout_seconds: float = Field(default=600.0, gt=0)
    # the service (agentmem worker / submit): see docs/service.md
    pool_shards: int = Field(default=4, ge=1, le=1024)  # ticket streams per role
    drain_grace_seconds: float = Field(default=20.0, ge=0)  # SIGTERM: finish what is held
    tenant_max_inflight: int = Field(default=4, ge=1)  # a tenant's runs in flight at once
    tenant_max_queued: int = Field(default=100, ge=0)  # a tenant's runs waiting to start
    # the pool's share of turns per tenant, "acme=2,beta=1" (a tenant not named: weight 1)
    tenant_weights: str = ""
    # LLM calls in flight across all of a tenant's runs in the pool (beside each run's cap)
    tenant_llm_max_concurrency: int = Field(default=8, ge=1, le=1024)
    # at the door of `agentmem serve` (web.door): each tenant's requests, and any request's size
    tenant_requests_per_second: float = Field(default=20.0, gt=0)
    tenant_request_burst: int = Field(default=60, ge=1)
    max_request_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    data_dir: str = ".agentmem"
    reports_dir: str = "reports"
    # local servers (devservers): the embedded Redis's append-only file fsync policy
    redis_appendfsync: str = Field(default="everysec", pattern="^(everysec|always)$")

    def handoff_json(self) -> str:
        """Every field, explicitly (``None`` included) and secrets in clear: what an agent
        process is started with. It carries secrets: pass it over a pipe, never log it."""
        values = {
            name: value.get_secret_value() if isinstance(value, SecretStr) else value
            for name, value in self
        }
        return json.dumps(values)

    @classmethod
    def from_handoff(cls, data: str | bytes) -> Settings:
        """The settings :meth:`handoff_json` wrote, exactly: every field is given, so none is
        taken from this process's environment (explicit values win over it)."""
        return cls.model_validate_json(data)

    @model_validator(mode="after")
    def _llm_is_usable(self) -> Self:
        self.check_llm()
        return self

    def weights(self) -> dict[str, float]:
        """``tenant_weights`` as a mapping (InvalidConfigError when it does not parse)."""
        weights: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in self.tenant_weights.split(","))):
            tenant, _, raw = item.partition("=")
            try:
                weight = float(raw)
            except ValueError:
                weight = 0.0
            if not tenant.strip() or not 0 < weight <= 1000:
                msg = (
                    f"AGENTMEM_TENANT_WEIGHTS: {item!r} is not tenant=weight (a number from "
                    "0 to 1000, above 0); write e.g. acme=2,beta=1"
                )
                raise InvalidConfigError(msg)
            weights[tenant.strip()] = weight
        return weights

    def check_llm(self) -> None:
        """Raise :class:`InvalidConfigError` if the chosen LLM cannot work as configured."""
        if self.llm == "openai" and self.openai_api_key is None and self.openai_base_url is None:
            msg = (
                "AGENTMEM_LLM=openai needs OPENAI_API_KEY, or OPENAI_BASE_URL pointing at a "
                "local OpenAI-compatible endpoint"
            )
            raise InvalidConfigError(msg)
        if self.openai_base_url is not None and not self.openai_base_url.startswith(
            ("http://", "https://")
        ):
            where = redact(self.openai_base_url)
            msg = f"OPENAI_BASE_URL must start with http:// or https://, not {where!r}"
            raise InvalidConfigError(msg)

    def memory_config(
        self, client_name: str = "agentmem", *, read_replica: bool = True
    ) -> MemoryConfig:
        """How to reach the servers; both URLs must be set (the CLI starts local ones).

        ``read_replica=False`` leaves ``DATABASE_READ_URL`` out: for a process that must read
        the latest versions (the agents), so that it opens no replica pool it would not use.
        """
        if self.redis_url is None or self.database_url is None:
            msg = "REDIS_URL and DATABASE_URL must both be set"
            raise InvalidConfigError(msg)
        return MemoryConfig(
            redis_url=self.redis_url.get_secret_value(),
            database_url=self.database_url.get_secret_value(),
            database_read_url=(
                None
                if self.database_read_url is None or not read_replica
                else self.database_read_url.get_secret_value()
            ),
            connect_timeout=self.connect_timeout_seconds,
            command_timeout=self.command_timeout_seconds,
            client_name=client_name,
            limits=Limits(
                fact_text_bytes=self.max_fact_bytes,
                fact_metadata_bytes=self.max_fact_bytes,
                event_payload_bytes=self.max_event_bytes,
                document_value_bytes=self.max_document_bytes,
            ),
        )
