"""The one settings object: ``unsubkit.toml`` overridden by ``UNSUBKIT_*`` environment variables.

Built once where the program starts (:func:`load_settings`) and passed down; nothing reads the
environment anywhere else. Secrets are :class:`pydantic.SecretStr` and never show in ``repr``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .errors import ConfigError, UnknownBrand

__all__ = ["DEFAULT_BRAND", "Brand", "Settings", "load_settings"]

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

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, v: str | None) -> str | None:
        return v.rstrip("/") if v else v

    @property
    def token_lifetime(self) -> int:
        return self.token_lifetime_days * 86400


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="UNSUBKIT_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    database_url: str = "sqlite:///./unsubkit.db"
    base_url: str = "http://127.0.0.1:8080"
    data_dir: Path = Path("./.unsubkit")
    mailto_address: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=2525, ge=0, le=65535)
    #: Bearer key for the admin API (``/api/v1``); unset disables the API.
    api_key: SecretStr | None = None
    log_level: str = "info"
    #: Largest one-click request body accepted, in bytes.
    max_body: int = 4096
    #: Opt-outs are group-committed: at most this many per transaction.
    max_batch: int = 256
    brands: dict[str, Brand] = Field(default_factory=dict)
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
