"""Server configuration: a TOML file (``--config``) into one frozen dataclass.

Every setting has an embedded default, so ``teleconsult serve`` runs with no file at
all; ``docs/operations.md`` lists every key. The file is validated as a whole (unknown
sections or keys, wrong types and out-of-range values are refused with the key named)
before anything starts. Command-line options override the file.

Units are in the names: ``grace_s``, ``max_message_bytes``, ``turn_ttl_s``.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import ssl
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from api.edge import EdgeConfig
from sessions.turn import IceConfig
from signaling.core import CoreConfig


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything ``teleconsult serve`` needs; see docs/operations.md for each key."""

    # [server]
    host: str = "127.0.0.1"
    port: int = 8443
    data_dir: Path = Path("var")
    public_url: str | None = None
    cert: Path | None = None
    key: Path | None = None
    record: bool = False
    web_dir: Path | None = None  # None: the installed package's assets
    # [sessions]
    secret: str | None = None
    grace_s: float = 30.0
    join_timeout_s: float = 10.0
    waiting_room: bool = True
    # [limits]
    max_message_bytes: int = 64 * 1024
    max_frame_bytes: int = 256 * 1024
    rate_per_s: float = 20.0
    burst: float = 50.0
    flood_close_after: int = 20
    # [keepalive]
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    # [ice]
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str | None = None
    turn_ttl_s: float = 12 * 3600.0
    ice_transport_policy: Literal["all", "relay"] = "all"
    # [backends]
    store: Literal["sqlite", "redis"] = "sqlite"
    bus: Literal["local", "redis"] = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"server.port must be 0-65535, not {self.port}")
        if (self.cert is None) != (self.key is None):
            raise ConfigError("server.cert and server.key go together")
        if self.max_frame_bytes < self.max_message_bytes:
            raise ConfigError("limits.max_frame_bytes must be >= limits.max_message_bytes")
        try:
            self.core_config()
            self.ice_config()
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc

    def core_config(self) -> CoreConfig:
        """The protocol core's settings."""
        return CoreConfig(
            grace_s=self.grace_s,
            join_timeout_s=self.join_timeout_s,
            max_message_bytes=self.max_message_bytes,
            rate_per_s=self.rate_per_s,
            burst=self.burst,
            flood_close_after=self.flood_close_after,
            waiting_room=self.waiting_room,
        )

    def ice_config(self) -> IceConfig:
        """STUN/TURN servers for clients."""
        return IceConfig(
            stun_urls=self.stun_urls,
            turn_urls=self.turn_urls,
            turn_secret=self.turn_secret,
            turn_ttl_s=self.turn_ttl_s,
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS context from ``cert``/``key``, or None for plain ws://."""
        if self.cert is None or self.key is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load TLS certificate {self.cert} / {self.key}: {exc}"
            ) from exc
        return context

    def edge_config(self) -> EdgeConfig:
        """Where and how the edge listens."""
        return EdgeConfig(
            host=self.host,
            port=self.port,
            ping_interval_s=self.ping_interval_s,
            ping_timeout_s=self.ping_timeout_s,
            max_frame_bytes=self.max_frame_bytes,
        )

    def base_url(self, port: int | None = None) -> str:
        """The URL people open: ``public_url``, else built from host and port."""
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.cert else "http"
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.port if port is None else port}"


# The file's shape: one Struct per section, unknown keys refused.
class _Section(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


class _Server(_Section):
    host: str | None = None
    port: int | None = None
    data_dir: str | None = None
    public_url: str | None = None
    cert: str | None = None
    key: str | None = None
    record: bool | None = None
    web_dir: str | None = None


class _Sessions(_Section):
    secret: str | None = None
    grace_s: float | None = None
    join_timeout_s: float | None = None
    waiting_room: bool | None = None


class _Limits(_Section):
    max_message_bytes: int | None = None
    max_frame_bytes: int | None = None
    rate_per_s: float | None = None
    burst: float | None = None
    flood_close_after: int | None = None


class _Keepalive(_Section):
    ping_interval_s: float | None = None
    ping_timeout_s: float | None = None


class _Ice(_Section):
    stun_urls: list[str] | None = None
    turn_urls: list[str] | None = None
    turn_secret: str | None = None
    turn_ttl_s: float | None = None
    ice_transport_policy: Literal["all", "relay"] | None = None


class _Backends(_Section):
    store: Literal["sqlite", "redis"] | None = None
    bus: Literal["local", "redis"] | None = None
    redis_url: str | None = None


class _File(_Section):
    server: _Server = msgspec.field(default_factory=_Server)
    sessions: _Sessions = msgspec.field(default_factory=_Sessions)
    limits: _Limits = msgspec.field(default_factory=_Limits)
    keepalive: _Keepalive = msgspec.field(default_factory=_Keepalive)
    ice: _Ice = msgspec.field(default_factory=_Ice)
    backends: _Backends = msgspec.field(default_factory=_Backends)


_PATHS: Final = frozenset({"data_dir", "cert", "key", "web_dir"})


def add_config_arguments(parser: argparse.ArgumentParser, data_dir_help: str) -> None:
    """Add ``--data-dir`` and ``--config``, which every command reading server state takes."""
    parser.add_argument("--data-dir", type=Path, help=f"{data_dir_help} (default ./var)")
    parser.add_argument("--config", type=Path, help="TOML configuration (docs/operations.md)")


def load_config(path: Path | None = None, **overrides: Any) -> Config:
    """Read ``path`` (TOML) if given, apply non-None ``overrides``, validate.

    Relative paths in the file are taken relative to the file's folder.

    Raises
    ------
    ConfigError
        Unreadable file, bad TOML, unknown key, wrong type or invalid value.
    """
    values: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        try:
            parsed = msgspec.convert(raw, _File)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        for section in msgspec.structs.asdict(parsed).values():
            for key, value in msgspec.structs.asdict(section).items():
                if value is None or value == "":
                    continue
                if key in _PATHS:
                    value = (path.parent / value) if not Path(value).is_absolute() else Path(value)
                values[key] = tuple(value) if isinstance(value, list) else value
    for key, value in overrides.items():
        if value is not None:
            values[key] = Path(value) if key in _PATHS else value
    unknown = set(values) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    return Config(**values)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S: Final = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration_s(text: str) -> float:
    """``"90"``, ``"45s"``, ``"30m"``, ``"2h"``, ``"7d"`` in seconds.

    Raises
    ------
    ValueError
        For anything else, or a zero duration.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 2h, 7d)")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds
