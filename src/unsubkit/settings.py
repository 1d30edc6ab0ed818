"""The one settings object: ``unsubkit.toml`` overridden by ``UNSUBKIT_*`` environment variables.

Built once where the program starts (:func:`load_settings`) and passed down; nothing reads the
environment anywhere else. Secrets are :class:`pydantic.SecretStr` and never show in ``repr``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .consent.automation import DEFAULT_SCANNER_USER_AGENTS
from .errors import ConfigError, UnknownBrand

__all__ = ["DEFAULT_BRAND", "Brand", "Settings", "WebhookSettings", "load_settings"]

DEFAULT_BRAND = "default"
CONFIG_ENV = "UNSUBKIT_CONFIG"
DEFAULT_CONFIG = "unsubkit.toml"


class Brand(BaseModel):
    """A sending identity (usually one domain) with its own unsubscribe behaviour."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The feature switch: a disabled brand gets no unsubscribe headers at all.
    enabled: bool = True
    #: Public base of the one-click URLs; ``None`` inherits ``Settings.base_url``.
    base_url: str | None = None
    one_click: bool = True
    #: Unsubscribe address (``unsubscribe@example.com``), ``False`` for none, ``None`` to inherit
    #: ``Settings.mailto_address``.
    mailto: str | Literal[False] | None = None
    token_lifetime_days: int = Field(default=180, ge=1, le=3650)
    #: Sending domains of this brand (used to pick the brand for a message and for the mailto
    #: listener's "is this domain ours" check).
    domains: list[str] = Field(default_factory=list)
    #: ``channel``: consent belongs to the address; ``identity``: to the contact owning it.
    consent_level: Literal["channel", "identity"] = "channel"
    #: A one-click opt-out also sets the contact's bulk-email switch to "do not allow".
    one_click_sets_bulk_email: bool = False
    #: Names of DKIM keys (files ``<data_dir>/dkim/<name>.pem``) to sign this brand's mail with.
    dkim_keys: list[str] = Field(default_factory=list)
    #: Display name shown on the landing and preference pages.
    display_name: str | None = None
    #: Footer added to message bodies without a ``{{unsubscribe_url}}`` placeholder.
    footer_text: str = "\n\n--\nUnsubscribe: {unsubscribe_url}\n"
    footer_html: str = '<p style="font-size:12px;color:#666">' \
        '<a href="{unsubscribe_url}">Unsubscribe</a></p>'
    #: Accept mail to the bare unsubscribe address, identified by a DKIM-aligned From.
    mailto_from_fallback: bool = False
    #: Customer-managed mode: the headers point to the customer's own one-click URL and/or
    #: mailto address, carrying sealed ``params``/``pid`` (open them with ``GET /api/v1/decrypt``);
    #: unsubkit then stores no consent for this brand.
    customer_managed: bool = False
    customer_url: str | None = None
    customer_mailto: str | None = None
    #: A handler (entry point name in ``unsubkit.handlers`` or ``module:function``) that replaces
    #: the built-in opt-out for this brand: the event is still recorded, the state is not changed.
    replace_default_with: str | None = None

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, v: str | None) -> str | None:
        return v.rstrip("/") if v else v

    @property
    def token_lifetime(self) -> int:
        return self.token_lifetime_days * 86400

    @model_validator(mode="after")
    def _customer_endpoints(self) -> Brand:
        if self.customer_managed and not (self.customer_url or self.customer_mailto):
            raise ValueError("a customer-managed brand needs customer_url and/or customer_mailto")
        if self.customer_url and not self.customer_url.startswith(("https://", "http://")):
            raise ValueError("customer_url must be an http(s) URL")
        if self.customer_mailto and "@" not in self.customer_mailto:
            raise ValueError("customer_mailto must be an address like unsubscribe@example.com")
        return self


class WebhookSettings(BaseModel):
    """Delivery of consent events to webhook endpoints and handlers (``[webhooks]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Seconds one HTTP attempt (or one handler call) may take.
    timeout: float = Field(default=10.0, gt=0, le=300)
    #: A delivery still failing this many seconds after its event goes to the dead letters.
    max_age: float = Field(default=3 * 86400.0, gt=0)
    #: Retry n waits about ``backoff_base * backoff_factor**(n-1)`` seconds (with jitter),
    #: at most ``backoff_max``: 2 s, 8 s, 32 s, 2 min, 8.5 min, 34 min, 2.3 h, 6 h ...
    backoff_base: float = Field(default=2.0, gt=0)
    backoff_factor: float = Field(default=4.0, ge=1)
    backoff_max: float = Field(default=6 * 3600.0, gt=0)
    #: Attempts in flight at once per worker.
    concurrency: int = Field(default=16, ge=1, le=512)
    #: Seconds between looks at the outbox when idle.
    poll_interval: float = Field(default=1.0, gt=0)
    #: A claimed attempt belongs to its worker this long; then another worker may retry it.
    #: Must exceed ``timeout`` (a worker killed mid-delivery is retried after the lease).
    lease: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _lease_covers_timeout(self) -> WebhookSettings:
        if self.lease <= self.timeout:
            raise ValueError("webhooks.lease must be longer than webhooks.timeout")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="UNSUBKIT_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    #: Kept out of ``repr``: a PostgreSQL URL may carry a password.
    database_url: str = Field(default="sqlite:///./unsubkit.db", repr=False)
    base_url: str = "http://127.0.0.1:8080"
    data_dir: Path = Path("./.unsubkit")
    mailto_address: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=2525, ge=0, le=65535)
    #: The mailto listener: off entirely, or LMTP instead of SMTP (Postfix ``lmtp:`` transports).
    smtp_enabled: bool = True
    smtp_lmtp: bool = False
    #: Largest inbound unsubscribe message, in bytes (``552`` beyond).
    smtp_max_message_size: int = Field(default=256 * 1024, ge=1024)
    #: Recipients accepted per transaction (``452`` beyond; the client sends the rest later).
    smtp_max_recipients: int = Field(default=50, ge=1)
    #: Seconds a session may stay silent before the listener closes it.
    smtp_idle_timeout: float = Field(default=300.0, gt=0)
    #: DKIM key lookups for the mailto From-address fallback: seconds before giving up, and an
    #: optional file of ``name TXT`` lines answering instead of DNS (air-gapped setups, tests).
    mailto_dns_timeout: float = Field(default=5.0, gt=0)
    mailto_dns_file: Path | None = None
    #: The outbound SMTP relay (``unsubkit relay``): where apps submit mail, which client
    #: networks may, and the smarthost the prepared copies go to.
    relay_host: str = "127.0.0.1"
    relay_port: int = Field(default=2526, ge=0, le=65535)
    relay_allowed_clients: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    relay_upstream_host: str | None = None
    relay_upstream_port: int = Field(default=25, ge=1, le=65535)
    #: ``none`` (plain), ``starttls`` (required, e.g. port 587) or ``tls`` (implicit, port 465).
    relay_upstream_security: Literal["none", "starttls", "tls"] = "none"
    relay_upstream_username: str | None = None
    relay_upstream_password: SecretStr | None = None
    relay_upstream_verify_tls: bool = True
    relay_upstream_ca_file: Path | None = None
    relay_upstream_timeout: float = Field(default=60.0, gt=0)
    #: Upstream connections open at once (copies are sent in parallel over them).
    relay_upstream_connections: int = Field(default=4, ge=1, le=256)
    #: Purpose for messages without ``X-Unsubkit-Purpose``; unset: such messages are refused.
    relay_default_purpose: str | None = None
    #: Brand for messages without ``X-Unsubkit-Brand``; unset: the brand owning the From domain,
    #: else ``default``.
    relay_default_brand: str | None = None
    relay_max_message_size: int = Field(default=25 * 1024 * 1024, ge=1024)
    relay_max_recipients: int = Field(default=100, ge=1)
    relay_idle_timeout: float = Field(default=300.0, gt=0)
    #: Seconds a relay remembers which copies of a deferred (451) message already went out, so
    #: the app's retry sends only the rest.
    relay_retry_memory: float = Field(default=5 * 86400.0, gt=0)
    #: Bearer key for the admin API (``/api/v1``); unset disables the API.
    api_key: SecretStr | None = None
    log_level: str = "info"
    #: Largest one-click request body accepted, in bytes.
    max_body: int = Field(default=4096, ge=64, le=1024 * 1024)
    #: Opt-outs are group-committed: at most this many per transaction.
    max_batch: int = Field(default=256, ge=1, le=10_000)
    #: Where ``serve`` group-commits opt-outs: ``process`` (a writer process of its own, off the
    #: web process's GIL: the faster under load) or ``thread`` (a thread of the web process).
    writer: Literal["process", "thread"] = "process"
    #: An opt-out this many seconds or less after its token was issued (the send) is flagged
    #: ``suspected_automated`` for review; 0 disables the check. Never blocks the opt-out.
    automation_window_seconds: float = Field(default=10.0, ge=0)
    #: Case-insensitive user-agent fragments of link scanners; a match flags the opt-out too.
    scanner_user_agents: list[str] = Field(default_factory=lambda: list(DEFAULT_SCANNER_USER_AGENTS))
    brands: dict[str, Brand] = Field(default_factory=dict)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    #: Custom handlers run for every consent event after commit, through the outbox: entry point
    #: names (group ``unsubkit.handlers``) or ``module:function``.
    handlers: list[str] = Field(default_factory=list)
    #: Where the settings came from (set by :func:`load_settings`, for messages only).
    config_path: Path | None = None

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    # -- brands ---------------------------------------------------------------------------

    def brand(self, name: str | None = None) -> Brand:
        """The named brand (``default`` when ``None``), with global settings filled in."""
        key = name or DEFAULT_BRAND
        brand = self.brands.get(key)
        if brand is None:
            if key != DEFAULT_BRAND:
                raise UnknownBrand(f"unknown brand {key!r}")
            brand = Brand()
        updates: dict[str, Any] = {}
        if brand.base_url is None:
            updates["base_url"] = self.base_url
        if brand.mailto is None:
            updates["mailto"] = self.mailto_address or False
        return brand.model_copy(update=updates) if updates else brand

    @property
    def brand_names(self) -> list[str]:
        names = list(self.brands)
        return names if DEFAULT_BRAND in names else [DEFAULT_BRAND, *names]

    def brand_for_domain(self, domain: str) -> str | None:
        domain = domain.lower().rstrip(".")
        for name in self.brand_names:
            b = self.brand(name)
            mailto_domain = b.mailto.rpartition("@")[2].lower() if b.mailto else None
            if domain == mailto_domain or domain in (d.lower() for d in b.domains):
                return name
        return None

    def lifetime(self, brand: str) -> int | None:
        try:
            return self.brand(brand).token_lifetime
        except UnknownBrand:
            # A token from a brand removed since: default lifetime still applies.
            return None

    # -- paths ----------------------------------------------------------------------------

    @property
    def keys_path(self) -> Path:
        return self.data_dir / "keys.json"

    @property
    def dkim_dir(self) -> Path:
        return self.data_dir / "dkim"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(**overrides: Any) -> Settings:
    """Build the settings (TOML < environment < ``overrides``), or raise :class:`ConfigError`."""
    path = Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG))
    if CONFIG_ENV in os.environ and not path.is_file():
        raise ConfigError(f"config file {path} (from {CONFIG_ENV}) does not exist")
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise ConfigError(f"invalid setting {loc or '?'}: {first.get('msg')}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc}") from None
    return settings.model_copy(update={"config_path": path if path.is_file() else None})
