"""``teleconsult serve`` and ``teleconsult token``.

``serve`` runs one process with embedded defaults (SQLite and the secret in the data
directory, no external service). With no arguments (``make serve``) it prints
ready-to-open ``/join`` links for a demo moderator and a demo participant. SIGINT and
SIGTERM close every connection (1001), let media sessions and Store writes finish,
then exit 0.

``token`` prints what it minted and, alone on its last line, the token itself, so
that scripts can take ``| tail -n 1``. It starts quickly: this module imports the server
(numpy, numba, aiortc, Litestar, uvicorn) only inside ``serve``.

The server is one ASGI application served by uvicorn on one port (``api.edge``): pages,
static files, ``/api/v1``, ``/ws``, ``/device``, ``/healthz``, ``/metrics``; TLS with
``--cert``/``--key``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import ipaddress
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Final

from sessions.errors import SessionError
from sessions.tokens import DEFAULT_PERMISSIONS, ROLES, KeyRing, load_key_ring, mint_token
from signaling.errors import ServerError
from teleconsult.config import (
    Config,
    ConfigError,
    add_config_arguments,
    load_config,
    parse_duration_s,
)

DEMO_ROOM: Final = "demo"
DEMO_TTL_S: Final = 2 * 3600.0


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``serve`` and ``token`` to the command line."""
    serve = commands.add_parser("serve", help="run the server (signaling, media, web client)")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 8443; 0 picks a free one)")
    add_config_arguments(serve, "where state is kept")
    serve.add_argument("--record", action="store_true", default=None, help="record every consult")
    serve.add_argument("--cert", type=Path, help="TLS certificate (PEM) for wss://")
    serve.add_argument("--key", type=Path, help="TLS private key (PEM)")
    serve.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    serve.set_defaults(handler=run_serve)

    token = commands.add_parser("token", help="mint an access token (JWT) for a room")
    token.add_argument("--identity", required=True, help="who (unique per person or device)")
    token.add_argument("--name", required=True, help="display name")
    token.add_argument("--role", required=True, choices=sorted(ROLES))
    token.add_argument("--room", required=True, help="the room the token enters")
    token.add_argument("--moderator", action="store_true", help="may admit, mute and remove")
    token.add_argument("--ttl", default="2h", help="lifetime, e.g. 90s, 30m, 2h, 7d (default 2h)")
    token.add_argument(
        "--url",
        help="the server's address as people open it, for the printed link "
        "(default: data.public_url, else the configured host and port)",
    )
    add_config_arguments(token, "where the secret is kept")
    token.set_defaults(handler=run_token)


def _config(args: argparse.Namespace, **overrides: Any) -> Config:
    return load_config(args.config, data_dir=args.data_dir, **overrides)


def run_token(args: argparse.Namespace) -> int:
    """Mint a token; the token alone on the last line."""
    try:
        config = _config(args)
        ttl_s = parse_duration_s(args.ttl)
        secret = load_key_ring(config.data_dir, config.secret)
        permissions = set(DEFAULT_PERMISSIONS[args.role])
        if args.moderator:
            permissions.add("moderate")
        token = mint_token(
            secret,
            identity=args.identity,
            name=args.name,
            role=args.role,
            room=args.room,
            permissions=frozenset(permissions),
            ttl_s=ttl_s,
        )
    except (ConfigError, SessionError, ValueError) as exc:
        print(f"teleconsult token: {exc}", file=sys.stderr)
        return 2
    print(
        f"token for {args.identity} ({args.name}), role {args.role}, room {args.room}, "
        f"permissions {', '.join(sorted(permissions))}, valid {args.ttl}"
    )
    for line in token_links(
        args.url.rstrip("/") if args.url else config.base_url(), args.role, token
    ):
        print(line)
    print(token)
    return 0


def token_links(base_url: str, role: str, token: str) -> list[str]:
    """What a token is for, as links: a device's endpoint (no page), a viewer's ECG page
    (and its room), anyone else's room."""
    if role == "device":
        ws = base_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return [f"device endpoint: {ws}/device  (send the token as Authorization: Bearer)"]
    links = [f"join: {base_url}/join?token={token}"]
    if role == "observer":
        links.insert(0, f"ecg: {base_url}/ecg?token={token}")
    return links


def demo_links(secret: str | KeyRing, base_url: str) -> list[tuple[str, str]]:
    """``(who, URL)`` for a demo moderator and a demo participant in room ``demo``, and
    a demo ECG viewer of that room's streams."""
    people = [
        ("demo-expert", "Demo Expert", "expert", {"publish", "subscribe", "moderate"}),
        ("demo-applicant", "Demo Applicant", "applicant", {"publish", "subscribe"}),
        ("demo-viewer", "Demo Viewer", "observer", {"subscribe"}),
    ]
    links = []
    for identity, name, role, permissions in people:
        token = mint_token(
            secret,
            identity=identity,
            name=name,
            role=role,
            room=DEMO_ROOM,
            permissions=frozenset(permissions),
            ttl_s=DEMO_TTL_S,
        )
        page = "ecg" if role == "observer" else "join"
        links.append((f"{name} ({role})", f"{base_url}/{page}?token={token}"))
    return links


def run_serve(args: argparse.Namespace) -> int:
    """Run the server until SIGINT or SIGTERM."""
    # Imported here: the server pulls in numpy, numba, aiortc, Litestar and uvicorn, which
    # `token` and `--version` must not wait for.
    from sqlalchemy.exc import SQLAlchemyError

    from ecg.warmup import warm_up
    from store.engine import StoreConfigError
    from teleconsult.app import AppError
    from teleconsult.platform import PlatformError

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Alembic names every migration it applies at INFO: a first start is not news. aioice
    # logs every ICE candidate pair (participants' addresses) at INFO: not in our log.
    for noisy in ("alembic", "aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.root.level))
    try:
        config = _config(
            args, host=args.host, port=args.port, record=args.record, cert=args.cert, key=args.key
        )
        # Before the live workers start: they load what this compiles, instead of each
        # compiling the kernels at once (see ecg.warmup).
        took_s = warm_up()
        if took_s > 2.0:
            print(f"ECG kernels compiled in {took_s:.0f} s (first start after an install)")
        return asyncio.run(_serve(config))
    except (ConfigError, SessionError, AppError, ServerError, PlatformError) as exc:
        print(f"teleconsult serve: {exc}", file=sys.stderr)
        return 2
    except StoreConfigError as exc:
        print(f"teleconsult serve: the database: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        cause = exc.__cause__ or exc.__context__
        reason = str(cause).strip() if cause is not None else type(exc).__name__
        print(f"teleconsult serve: the database cannot be opened: {reason}", file=sys.stderr)
        return 2


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def _serve(config: Config) -> int:
    # The live workers start with the first ECG stream (the kernels already compiled
    # by warm_up, so they only load them). Started with the server, idle workers went
    # with slower first remote video frames in consult rooms, for a reason not found
    # (bench/first_frame.py, 40 repetitions, seen-by-present p95: 1.13-1.30 s without
    # them in three runs, 1.38-1.57 s with them in three).
    from consults.repositories import PageRequest, PeopleFilter
    from teleconsult.app import assemble
    from teleconsult.heap import free_heap_every, map_large_blocks

    if config.server.heap_mmap_threshold_bytes:
        map_large_blocks(config.server.heap_mmap_threshold_bytes)
    assembly = assemble(config)
    server = assembly.server
    if config.server.heap_trim_every_s:
        server.background.append(
            functools.partial(free_heap_every, config.server.heap_trim_every_s)
        )
    people = assembly.platform.stores.directory.list_people(PeopleFilter(), PageRequest(limit=1))
    await server.start()
    # What start-up built (modules, the application and its routes, the directory
    # snapshot) lives as long as the process: frozen, a full collection no longer walks
    # it. With 200 carts streaming, full collections took 0.31 s of the event loop's
    # process in 20 s (two pauses of ~150 ms), 0.01 s frozen. Collected first, so that
    # no garbage of start-up is frozen with it.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    base = config.base_url(server.port)
    secret = load_key_ring(config.data_dir, config.secret)
    data_dir = config.data_dir
    # The command as this shell can run it (make serve runs .venv/bin/teleconsult).
    program = sys.argv[0] if Path(sys.argv[0]).name == "teleconsult" else "teleconsult"
    begin = (
        [f"log in: {base}/static/login.html   live ECG: {base}/ecg"]
        if people.total
        else [
            "no account yet: create the deployment's first admin (then log in at",
            f"{base}/static/login.html and add institutions, people and carts):",
            f"  {program} setup --admin USERNAME --password-stdin --data-dir {data_dir}",
        ]
    )
    # Demo links only where nobody else can reach them: a token in a terminal of a
    # server on every address is a token for anyone who sees the screen.
    demo = (
        [
            f"demo room {DEMO_ROOM!r}, links valid {DEMO_TTL_S / 3600:.0f} h (loopback only):",
            *(f"  {who}: {url}" for who, url in demo_links(secret, base)),
        ]
        if _loopback(config.server.host)
        else ["(no demo links: the server listens beyond loopback)"]
    )
    lines = [
        f"teleconsult serving on {base}  (data in {data_dir.resolve()})",
        *begin,
        f"health: {base}/healthz   metrics: {base}/metrics   API: {base}/api/v1/openapi.json",
        *demo,
        "mint more tokens with:",
        f"  {program} token --identity ID --name NAME --role ROLE --room ROOM "
        f"[--moderator] [--ttl 2h] --data-dir {config.data_dir}",
        "stop with Ctrl-C",
    ]
    print("\n".join(lines), flush=True)
    try:
        await stop.wait()
    finally:
        print("shutting down", flush=True)
        await server.close()
    return 0
