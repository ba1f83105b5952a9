"""Server configuration declared once: one validated tree of frozen dataclasses.

Each section of the tree *is* the settings type of the package that uses it, so a
setting is declared in one place (with its default, unit and validation) and handed
over whole, never copied field by field:

==============  ==========================================  ==========================
TOML section    type                                        taken by
==============  ==========================================  ==========================
``[server]``    :class:`api.edge_config.EdgeConfig`         the edge (listen, limits)
``[api]``       :class:`api.edge_config.ApiConfig`          the ASGI application
``[core]``      :class:`signaling.config.CoreConfig`        the signaling core
``[ice]``       :class:`sessions.turn.IceConfig`            STUN/TURN for clients
``[media]``     :class:`MediaSection`                       the SFU (``media.sfu``)
``[data]``      :class:`DataSection`                        paths, TLS files, secret
``[backends]``  :class:`BackendsSection`                    Store and Bus
``[consults]``  :class:`consults.settings.ConsultSettings`  the consult service
``[readings]``  :class:`consults.settings.ReadingSettings`  the ECG centre
``[accounts]``  :class:`consults.accounts.AccountPolicy`    logins: passwords, lockout,
                                                            sessions, argon2 cost
``[uploads]``   :class:`api.edge_config.RecordUploadConfig` WFDB record uploads
``[ecg]``       :class:`EcgSection`                         every annotation the
                                                            server makes (live, batch,
                                                            uploads, reading pages)
==============  ==========================================  ==========================

Sources, later ones winning: the embedded defaults, a TOML file (``--config``), the
environment (``TELECONSULT_<SECTION>__<KEY>``, e.g. ``TELECONSULT_CORE__GRACE_S=10``;
the value is read as a TOML value when it is one, else as a string), then command-line
options. The whole is validated before anything starts: unknown sections or keys,
wrong types and out-of-range values are refused with the key named. Relative paths in
a file are relative to the file's folder. Units are in the names (``grace_s``,
``max_message_bytes``, ``turn_ttl_s``).

This module imports nothing heavy (no Litestar, uvicorn, numpy): ``teleconsult token``
reads the configuration too.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from api.edge_config import ApiConfig, EdgeConfig, RecordUploadConfig
from consults.accounts import AccountPolicy
from consults.settings import ConsultSettings, ReadingSettings
from sessions.turn import IceConfig
from signaling.config import CoreConfig

if TYPE_CHECKING:
    from ecg.annotate import AnnotateConfig
    from ecg.live import LiveConfig

ENV_PREFIX: Final = "TELECONSULT_"


DATABASE_URL_ENV: Final = "TELECONSULT_DATABASE_URL"


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


@dataclass(frozen=True, kw_only=True)
class DataSection:
    """``[data]``: where state is kept and how people reach the server.

    Attributes
    ----------
    data_dir : Path
        The data folder (secret, SQLite, streams, recordings).
    public_url : str or None
        The URL printed in links, when the server is behind a proxy or a name.
    cert, key : Path or None
        PEM certificate chain and private key: with both, ``https://`` and ``wss://``.
    web_dir : Path or None
        The browser assets; None: the installed ``web`` package's.
    secret : str or None
        The token signing secret (>= 32 bytes); else ``TELECONSULT_SECRET``, else
        ``data_dir/secret``.
    """

    data_dir: Path = Path("var")
    public_url: str | None = None
    cert: Path | None = None
    key: Path | None = None
    web_dir: Path | None = None
    secret: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("data.cert and data.key go together")


@dataclass(frozen=True, kw_only=True)
class MediaSection:
    """``[media]``: the SFU's options.

    Attributes
    ----------
    record : bool
        Record every consult (hospital policy); otherwise by the room's consent.
    ice_transport_policy : {"all", "relay"}
        ``relay``: the server's own media uses TURN relays only.
    """

    record: bool = False
    ice_transport_policy: Literal["all", "relay"] = "all"


@dataclass(frozen=True, kw_only=True)
class BackendsSection:
    """``[backends]``: the SQL store and the Bus (embedded by default).

    Attributes
    ----------
    database_url : str or None
        PostgreSQL for a deployment of several nodes
        (``postgresql+psycopg://user:password@host/db``); None: SQLite in the data dir
        (``teleconsult.sqlite3``). Also read from ``TELECONSULT_DATABASE_URL``, as the
        ``audit`` and ``backup`` commands do.
    bus : {"local", "redis"}
        What nodes share live (bans, audit fan-out): in-process, or Redis at
        ``redis_url``.
    """

    database_url: str | None = None
    bus: Literal["local", "redis"] = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"

    def database(self, environ: Mapping[str, str] | None = None) -> str | None:
        """``database_url``, else ``TELECONSULT_DATABASE_URL``, else None (SQLite)."""
        env = os.environ if environ is None else environ
        return self.database_url or env.get(DATABASE_URL_ENV) or None


@dataclass(frozen=True, kw_only=True)
class EcgSection:
    """``[ecg]``: what the ECG engine is told wherever the server annotates.

    Declared here, not in ``ecg``: this module must not import numpy, and the engine's
    own settings (:class:`ecg.annotate.AnnotateConfig`, :class:`ecg.live.LiveConfig`)
    are made from it by :meth:`annotate_config` and :meth:`live_config`, so that the
    live path, the batch re-annotation, uploads and the reading pages agree.

    Attributes
    ----------
    mains_hz : {50, 60, "none"}
        The mains frequency notched out, Hz; ``"none"`` for no notch (TOML has no null).
    qtc_first : {"bazett", "fridericia", "framingham", "hodges"}
        The QTc formula shown first (the reading page, the signed report, the exports);
        every formula is still measured.
    """

    mains_hz: Literal[50, 60, "none"] = 50
    qtc_first: Literal["bazett", "fridericia", "framingham", "hodges"] = "bazett"

    @property
    def notch_hz(self) -> float | None:
        """The notch frequency in Hz, None for no notch."""
        return None if self.mains_hz == "none" else float(self.mains_hz)

    def annotate_config(self) -> AnnotateConfig:
        """The batch engine's settings (finished streams, uploads, reading pages)."""
        from ecg.annotate import AnnotateConfig
        from ecg.measure import MeasureConfig, QtcFormula

        measure = MeasureConfig(qtc_first=QtcFormula(self.qtc_first))
        return AnnotateConfig(mains_hz=self.notch_hz, measure=measure)

    def live_config(self) -> LiveConfig:
        """The live pipeline's settings (streams still arriving)."""
        from ecg.live import LiveConfig

        return LiveConfig(mains_hz=self.notch_hz)


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything ``teleconsult serve`` needs; see docs/operations.md for each key."""

    server: EdgeConfig = field(default_factory=EdgeConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    core: CoreConfig = field(default_factory=CoreConfig)
    ice: IceConfig = field(default_factory=IceConfig)
    media: MediaSection = field(default_factory=MediaSection)
    data: DataSection = field(default_factory=DataSection)
    backends: BackendsSection = field(default_factory=BackendsSection)
    consults: ConsultSettings = field(default_factory=ConsultSettings)
    readings: ReadingSettings = field(default_factory=ReadingSettings)
    accounts: AccountPolicy = field(default_factory=AccountPolicy)
    uploads: RecordUploadConfig = field(default_factory=RecordUploadConfig)
    ecg: EcgSection = field(default_factory=EcgSection)

    def __post_init__(self) -> None:
        if self.server.max_frame_bytes < self.core.max_message_bytes:
            raise ValueError("server.max_frame_bytes must be >= core.max_message_bytes")

    # Shorthands for the two settings every command reads.
    @property
    def data_dir(self) -> Path:
        """``data.data_dir``."""
        return self.data.data_dir

    @property
    def secret(self) -> str | None:
        """``data.secret``."""
        return self.data.secret

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS context from ``data.cert``/``data.key``, or None for plain http/ws."""
        cert, key = self.data.cert, self.data.key
        if cert is None or key is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load TLS certificate {cert} / {key}: {exc}") from exc
        return context

    def base_url(self, port: int | None = None) -> str:
        """The URL people open: ``data.public_url``, else built from host and port."""
        if self.data.public_url:
            return self.data.public_url.rstrip("/")
        scheme = "https" if self.data.cert else "http"
        host = self.server.host
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.server.port if port is None else port}"


# Command-line options (flat names) and the key of the tree each one sets.
OPTIONS: Final[Mapping[str, tuple[str, str]]] = {
    "host": ("server", "host"),
    "port": ("server", "port"),
    "data_dir": ("data", "data_dir"),
    "cert": ("data", "cert"),
    "key": ("data", "key"),
    "record": ("media", "record"),
}


def _section_fields() -> dict[str, set[str]]:
    types: dict[str, Any] = {
        "server": EdgeConfig,
        "api": ApiConfig,
        "core": CoreConfig,
        "ice": IceConfig,
        "media": MediaSection,
        "data": DataSection,
        "backends": BackendsSection,
        "consults": ConsultSettings,
        "readings": ReadingSettings,
        "accounts": AccountPolicy,
        "uploads": RecordUploadConfig,
        "ecg": EcgSection,
    }
    return {name: {f.name for f in dataclasses.fields(kind)} for name, kind in types.items()}


def add_config_arguments(parser: argparse.ArgumentParser, data_dir_help: str) -> None:
    """Add ``--data-dir`` and ``--config``, which every command reading server state takes."""
    parser.add_argument("--data-dir", type=Path, help=f"{data_dir_help} (default ./var)")
    parser.add_argument("--config", type=Path, help="TOML configuration (docs/operations.md)")


def _read_file(path: Path) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    data = raw.get("data")
    if isinstance(data, dict):  # relative paths follow the file
        for key in ("data_dir", "cert", "key", "web_dir"):
            value = data.get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                data[key] = str(path.parent / value)
    return raw


def _env_value(text: str) -> Any:
    """An environment value: a TOML value when it parses as one (10, true, ["a"]), else text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _from_environment(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name.removeprefix(ENV_PREFIX).lower().partition("__")
        found.setdefault(section, {})[key] = _env_value(text)
    return found


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Config:
    """Read ``path`` (TOML) if given, then the environment, then non-None ``overrides``.

    Parameters
    ----------
    path : Path, optional
        The TOML file.
    environ : mapping, optional
        The environment (default ``os.environ``); ``TELECONSULT_<SECTION>__<KEY>``.
    **overrides
        Command-line options by their flat names (:data:`OPTIONS`).

    Raises
    ------
    ConfigError
        Unreadable file, bad TOML, unknown section or key, wrong type or invalid value.
    """
    tree: dict[str, Any] = _read_file(path) if path is not None else {}
    where = str(path) if path is not None else "configuration"
    for section, values in _from_environment(os.environ if environ is None else environ).items():
        tree.setdefault(section, {}).update(values)
    for option, value in overrides.items():
        if option not in OPTIONS:
            raise ConfigError(f"unknown option {option!r}")
        if value is not None:
            section, key = OPTIONS[option]
            tree.setdefault(section, {})[key] = str(value) if isinstance(value, Path) else value
    known = _section_fields()
    for section, values in tree.items():
        if section not in known:
            raise ConfigError(f"{where}: unknown section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        unknown = set(values) - known[section]
        if unknown:
            raise ConfigError(f"{where}: unknown key {section}.{sorted(unknown)[0]}")
    # An empty string in a file stands for "not set" (as in docs/operations.md).
    tree = {s: {k: v for k, v in values.items() if v != ""} for s, values in tree.items()}
    try:
        return msgspec.convert(tree, Config, strict=False, dec_hook=_decode)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _decode(kind: type, value: Any) -> Any:
    """msgspec's hook for the types it does not convert itself (paths from strings)."""
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"cannot convert {type(value).__name__} to {kind.__name__}")


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
