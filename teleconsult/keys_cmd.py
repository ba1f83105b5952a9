"""``teleconsult keys``: the token signing key ring of a data dir.

- ``keys list``: the key ids, which one signs, which one verifies tokens without a key
  id (minted with the plain ``secret`` before the ring existed). Secrets are never
  printed.
- ``keys rotate``: a new random key signs from now on; tokens signed by the others keep
  verifying until they expire or their key is retired. The first rotation of a data dir
  that had only ``secret`` keeps it in the ring.
- ``keys retire KID``: tokens signed by ``KID`` are refused from the next start of the
  server (not the current key: rotate first).

The ring is ``DATA_DIR/keys.json`` (mode 0600); restart the server (every node of a
deployment, with the same file) for a change to take effect.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sessions.errors import SessionError
from sessions.tokens import load_key_ring, rotate_key_ring, save_key_ring
from teleconsult.config import ConfigError, add_config_arguments, load_config

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the ``keys`` command group."""
    group = commands.add_parser("keys", help="list, rotate and retire token signing keys")
    sub = group.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    listing = sub.add_parser("list", help="the key ids (no secret is printed)")
    add_config_arguments(listing, "the server's data directory")
    listing.set_defaults(handler=run_list)
    rotate = sub.add_parser("rotate", help="a new key signs from now on; the others verify")
    add_config_arguments(rotate, "the server's data directory")
    rotate.set_defaults(handler=run_rotate)
    retire = sub.add_parser("retire", help="drop a key: its tokens are refused")
    retire.add_argument("kid", help="the key id (see keys list)")
    add_config_arguments(retire, "the server's data directory")
    retire.set_defaults(handler=run_retire)


def _describe(kid: str, current: str, unkeyed: str | None) -> str:
    marks = [m for m, on in (("signs", kid == current), ("verifies-unkeyed", kid == unkeyed)) if on]
    return f"{kid}  {' '.join(marks)}".rstrip()


def run_list(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, data_dir=args.data_dir)
        ring = load_key_ring(config.data_dir, config.secret)
    except (ConfigError, SessionError) as exc:
        print(f"teleconsult keys: {exc}", file=sys.stderr)
        return 2
    for kid in sorted(ring.keys):
        print(_describe(kid, ring.current, ring.unkeyed))
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, data_dir=args.data_dir)
        ring = rotate_key_ring(config.data_dir, config.secret)
    except (ConfigError, SessionError) as exc:
        print(f"teleconsult keys: {exc}", file=sys.stderr)
        return 2
    print(f"key {ring.current} signs from the next start of the server")
    return 0


def run_retire(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, data_dir=args.data_dir)
        ring = load_key_ring(config.data_dir, config.secret).retired(args.kid)
        save_key_ring(config.data_dir, ring)
    except (ConfigError, SessionError, ValueError) as exc:
        print(f"teleconsult keys: {exc}", file=sys.stderr)
        return 2
    print(f"key {args.kid} retired: its tokens are refused from the next start of the server")
    return 0
