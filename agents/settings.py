"""All configuration, read once from the environment in an entry point and passed down."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings for the orchestrator and every agent process (env prefix ``AGENTMEM_``,
    except the standard ``REDIS_URL``, ``DATABASE_URL`` and ``OPENAI_*`` names)."""

    model_config = SettingsConfigDict(env_prefix="AGENTMEM_", extra="ignore", populate_by_name=True)

    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    database_url: SecretStr | None = Field(default=None, validation_alias="DATABASE_URL")

    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    llm_model: str = Field(default="gpt-4o-mini", validation_alias="OPENAI_MODEL")
    llm: str = Field(default="auto", pattern="^(auto|stub|openai)$")
    llm_timeout_seconds: float = Field(default=60.0, gt=0)
    llm_max_attempts: int = Field(default=4, ge=1, le=10)
    log_prompts: bool = False
    stub_delay_seconds: float = Field(default=0.0, ge=0, le=60)  # simulated LLM latency

    heartbeat_seconds: float = Field(default=2.0, gt=0)
    status_ttl_seconds: int = Field(default=10, ge=1)
    lock_ttl_seconds: int = Field(default=10, ge=1)  # renewed every third while held
    reclaim_idle_ms: int = Field(default=5_000, ge=100)  # live workers keep theirs claimed
    max_deliveries: int = Field(default=5, ge=1)
    review_rounds: int = Field(default=3, ge=1, le=10)

    run_timeout_seconds: float = Field(default=600.0, gt=0)
    data_dir: str = ".agentmem"
    reports_dir: str = "reports"

    @property
    def use_stub_llm(self) -> bool:
        return self.llm == "stub" or (self.llm == "auto" and self.openai_api_key is None)

    # local servers (devservers)
    redis_appendfsync: str = Field(default="everysec", pattern="^(everysec|always)$")
