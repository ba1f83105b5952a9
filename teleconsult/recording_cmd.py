"""``teleconsult recording list`` and ``teleconsult recording export``: recorded consults.

``list`` shows every recording under ``<data-dir>/recordings`` (one line each, or JSON
with ``--json``): id, room, state (``recording`` also for one whose server was killed:
its files are playable up to the kill), start (UTC), participants, files, longest
track in seconds. A recording whose manifest cannot be read is listed as
``unreadable`` with the reason, never hidden.

``export ID --out FILE.mp4|FILE.webm`` writes one reviewable file of the whole
consult through ffmpeg (:mod:`media.export`): participants side by side, audio
mixed, every track at its wall-clock offset. Unknown id, wrong suffix, missing
ffmpeg or a failing ffmpeg: a message and exit status 1.

Both only read the folder a running server writes to.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from media.exceptions import RecordingError
from media.export import export
from media.recorder import read_manifest
from teleconsult.config import ConfigError, add_config_arguments, load_config

__all__ = ["recordings_dir", "register", "run_export", "run_list", "summaries"]


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the ``recording`` command group (``list``, ``export``)."""
    group = commands.add_parser("recording", help="list and export recorded consults")
    sub = group.add_subparsers(dest="recording_command", metavar="COMMAND", required=True)
    listing = sub.add_parser("list", help="list the recorded consults")
    add_config_arguments(listing, "the server's data folder")
    listing.add_argument("--json", action="store_true", help="one JSON document")
    listing.set_defaults(handler=run_list)
    out = sub.add_parser("export", help="write one reviewable file of a recorded consult")
    out.add_argument("recording", metavar="ID", help="the recording id (see `recording list`)")
    out.add_argument("--out", required=True, type=Path, metavar="FILE", help=".mp4 or .webm")
    add_config_arguments(out, "the server's data folder")
    out.set_defaults(handler=run_export)


def recordings_dir(args: argparse.Namespace) -> Path:
    """``<data dir>/recordings`` of the configuration the arguments name."""
    return load_config(args.config, data_dir=args.data_dir).data_dir / "recordings"


def summaries(root: Path) -> list[dict[str, Any]]:
    """One summary per recording folder under ``root``, oldest first."""
    found: list[dict[str, Any]] = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        try:
            manifest = read_manifest(directory)
        except RecordingError as error:
            found.append({"id": directory.name, "state": "unreadable", "error": str(error)})
            continue
        found.append(
            {
                "id": manifest.recording_id,
                "room": manifest.room_id,
                "state": str(manifest.state),
                "started_utc": manifest.started_utc,
                "participants": sorted(manifest.participants),
                "files": len(manifest.tracks),
                "duration_s": max((t.duration_s for t in manifest.tracks), default=0.0),
                "error": manifest.error,
            }
        )
    return found


def run_list(args: argparse.Namespace) -> int:
    """List the recordings."""
    try:
        found = summaries(recordings_dir(args))
    except (ConfigError, OSError) as error:
        print(f"teleconsult recording list: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(found, ensure_ascii=False))
        return 0
    print(f"{'recording':40}  {'room':16}  {'state':10}  {'started (UTC)':27}  files  duration_s")
    for s in found:
        if s["state"] == "unreadable":
            print(f"{s['id']:40}  {'':16}  unreadable  {s['error']}")
            continue
        print(
            f"{s['id']:40}  {s['room']:16.16}  {s['state']:10}  {s['started_utc']:27}  "
            f"{s['files']:5d}  {s['duration_s']:10.1f}  {','.join(s['participants'])}"
        )
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Export one recording."""
    try:
        root = recordings_dir(args)
        directory = root / args.recording
        if Path(args.recording).name != args.recording or not directory.is_dir():
            raise RecordingError(f"no recording {args.recording!r} in {root}")
        export(directory, args.out)
    except (ConfigError, RecordingError, OSError) as error:
        print(f"teleconsult recording export: {error}", file=sys.stderr)
        return 1
    print(args.out)
    return 0
