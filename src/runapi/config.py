"""Settings: built once at start-up from `RUNAPI_*` variables and the `RUNAPI_CONFIG` TOML file.

The result is frozen and passed down; nothing reads the environment after start-up.
Provider secrets are named by env var in the config and read here, once, into memory.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from runapi.catalog import Catalog, build_catalog, builtin_catalog_data

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./runapi.db"


class ServerSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The `[server]` table."""

    max_body_bytes: int = 4 * 1024 * 1024
    connect_timeout: float = 10.0
    first_byte_timeout: float = 120.0
    idle_timeout: float = 120.0
    public_base_url: str = ""
    max_attempts: int = 3


class ConfigFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The operator's TOML file. Unknown top-level tables are an error, with their path."""

    server: ServerSettings = ServerSettings()
    providers: dict[str, dict[str, Any]] = {}
    models: dict[str, dict[str, Any]] = {}


class Settings(msgspec.Struct, frozen=True):
    database_url: str
    redis_url: str
    admin_token: str
    server: ServerSettings
    catalog: Catalog
    provider_keys: dict[str, str]  # provider name -> secret (never logged)

    def __repr__(self) -> str:  # keep secrets out of tracebacks and logs
        return f"Settings(database_url={self.database_url!r}, redis_url={'set' if self.redis_url else ''!r})"


class ConfigError(Exception):
    """The configuration is invalid; the message says where and what to fix."""


def load_config_file(path: str | os.PathLike[str] | None) -> ConfigFile:
    if not path:
        return ConfigFile()
    try:
        data = tomllib.loads(Path(path).read_text("utf-8"))
        return msgspec.convert(data, ConfigFile)
    except FileNotFoundError as exc:
        raise ConfigError(f"RUNAPI_CONFIG points at {path}, which does not exist") from exc
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def load_settings(env: Mapping[str, str] | None = None, config: ConfigFile | None = None) -> Settings:
    """Build the frozen settings from `env` (default: `os.environ`) and the config file."""
    env = os.environ if env is None else env
    if config is None:
        config = load_config_file(env.get("RUNAPI_CONFIG"))
    try:
        catalog = build_catalog(builtin_catalog_data(), config.providers, config.models)
    except (msgspec.ValidationError, ValueError) as exc:
        raise ConfigError(f"catalog: {exc}") from exc
    keys = {
        name: env[spec.api_key_env]
        for name, spec in catalog.providers.items()
        if spec.api_key_env and env.get(spec.api_key_env)
    }
    return Settings(
        database_url=env.get("RUNAPI_DATABASE_URL") or DEFAULT_DATABASE_URL,
        redis_url=env.get("RUNAPI_REDIS_URL", ""),
        admin_token=env.get("RUNAPI_ADMIN_TOKEN", ""),
        server=config.server,
        catalog=catalog,
        provider_keys=keys,
    )
