"""Settings: TOML < environment < explicit overrides; brands; secrets stay out of repr and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from unsubkit.errors import ConfigError, UnknownBrand
from unsubkit.settings import DEFAULT_BRAND, Brand, Settings, load_settings

TOML = """\
database_url = "postgresql://app:hunter2-db-pass@127.0.0.1/unsub"
base_url = "https://unsub.example.com/"
api_key = "sk-very-secret-admin-key"
mailto_address = "unsubscribe@example.com"
port = 9000

[brands.news]
base_url = "https://news.example.com/"
mailto = "leave@news.example.com"
token_lifetime_days = 30
domains = ["news.example.com", "Mail.News.Example.com"]
display_name = "The News"

[brands.quiet]
enabled = false
mailto = false
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "conf" / "unsubkit.toml"
    path.parent.mkdir()
    path.write_text(TOML)
    monkeypatch.setenv("UNSUBKIT_CONFIG", str(path))
    return path


def test_defaults_without_any_file() -> None:
    s = load_settings()
    assert s.database_url == "sqlite:///./unsubkit.db"
    assert s.base_url == "http://127.0.0.1:8080"
    assert s.data_dir == Path(".unsubkit")
    assert s.mailto_address is None
    assert s.api_key is None
    assert s.max_body == 4096
    assert s.config_path is None
    assert s.keys_path == Path(".unsubkit") / "keys.json"
    assert s.brand_names == [DEFAULT_BRAND]
    assert s.is_sqlite


def test_default_config_file_in_working_directory(tmp_path: Path) -> None:
    (tmp_path / "unsubkit.toml").write_text('base_url = "https://cwd.example.com"\n')
    s = load_settings()
    assert s.base_url == "https://cwd.example.com"
    assert s.config_path == Path("unsubkit.toml")


def test_toml_file(config: Path) -> None:
    s = load_settings()
    assert s.config_path == config
    assert s.base_url == "https://unsub.example.com"  # trailing slash stripped
    assert s.port == 9000
    assert s.api_key is not None and s.api_key.get_secret_value() == "sk-very-secret-admin-key"
    assert not s.is_sqlite


def test_environment_overrides_toml_and_arguments_override_both(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNSUBKIT_PORT", "9100")
    monkeypatch.setenv("UNSUBKIT_DATABASE_URL", "sqlite:////tmp/elsewhere.db")
    monkeypatch.setenv("UNSUBKIT_DATA_DIR", "/tmp/unsubkit-data")
    monkeypatch.setenv("UNSUBKIT_BRANDS__NEWS__DISPLAY_NAME", "News from env")
    s = load_settings()
    assert s.port == 9100
    assert s.database_url == "sqlite:////tmp/elsewhere.db"
    assert s.data_dir == Path("/tmp/unsubkit-data")
    assert s.brand("news").display_name == "News from env"
    assert s.brand("news").token_lifetime_days == 30  # the rest of the table still comes from TOML
    assert load_settings(port=9200, base_url=None).port == 9200


def test_missing_config_named_by_environment_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("UNSUBKIT_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()


@pytest.mark.parametrize(
    ("toml", "env", "needle"),
    [
        ("port = 70000\n", {}, "port"),
        ("", {"UNSUBKIT_PORT": "eighty"}, "port"),
        ("bogus_setting = 1\n", {}, "bogus_setting"),
        ("max_body = -5\n", {}, "max_body"),
        ("max_batch = 0\n", {}, "max_batch"),
        ("[brands.x]\ntoken_lifetime_days = 0\n", {}, "token_lifetime_days"),
        ("[brands.x]\nsurprise = true\n", {}, "surprise"),
        ('api_key = "sk-very-secret-admin-key\n', {}, "cannot read configuration"),
    ],
)
def test_invalid_settings_are_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, env: dict[str, str], needle: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('api_key = "sk-very-secret-admin-key"\n' + toml if "api_key" not in toml else toml)
    monkeypatch.setenv("UNSUBKIT_CONFIG", str(path))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert needle in message
    assert "\n" not in message
    assert "sk-very-secret-admin-key" not in message


def test_secrets_never_in_repr_or_str(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    for text in (repr(s), str(s), repr(s.api_key), str(s.api_key), repr(s.model_dump())):
        assert "sk-very-secret-admin-key" not in text
    for text in (repr(s), str(s)):
        assert "hunter2-db-pass" not in text
    monkeypatch.setenv("UNSUBKIT_API_KEY", "env-secret-key-123")
    s2 = load_settings()
    assert "env-secret-key-123" not in repr(s2)
    assert s2.api_key is not None and s2.api_key.get_secret_value() == "env-secret-key-123"


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.port = 1  # type: ignore[misc]


def test_brands(config: Path) -> None:
    s = load_settings()
    assert s.brand_names == [DEFAULT_BRAND, "news", "quiet"]
    default = s.brand()
    assert default == s.brand(DEFAULT_BRAND)
    assert default.enabled and default.one_click
    assert default.base_url == "https://unsub.example.com"  # inherited
    assert default.mailto == "unsubscribe@example.com"  # inherited from mailto_address
    assert default.token_lifetime == 180 * 86400

    news = s.brand("news")
    assert news.base_url == "https://news.example.com"
    assert news.mailto == "leave@news.example.com"
    assert news.token_lifetime == 30 * 86400
    assert s.lifetime("news") == 30 * 86400

    quiet = s.brand("quiet")
    assert quiet.enabled is False
    assert quiet.mailto is False  # off, not inherited
    assert quiet.base_url == "https://unsub.example.com"

    with pytest.raises(UnknownBrand):
        s.brand("nope")
    assert s.lifetime("nope") is None  # a removed brand's tokens fall back to the default lifetime


def test_default_brand_without_mailto_address() -> None:
    s = Settings()
    assert s.brand().mailto is False
    assert s.brand().base_url == "http://127.0.0.1:8080"


def test_brand_for_domain(config: Path) -> None:
    s = load_settings()
    assert s.brand_for_domain("news.example.com") == "news"
    assert s.brand_for_domain("MAIL.news.example.com.") == "news"
    assert s.brand_for_domain("Example.com") == DEFAULT_BRAND  # the default brand's mailto domain
    assert s.brand_for_domain("other.example.net") is None


def test_brand_model_is_strict() -> None:
    assert Brand(base_url="https://x.example/").base_url == "https://x.example"
    with pytest.raises(ValueError):
        Brand(consent_level="everything")  # type: ignore[arg-type]
