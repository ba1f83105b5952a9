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

Both only read the folder a running server writes to. Participants are named as they
joined (the ``join`` rows of the room in the audit trail map each participant id to its
name); an export is itself an audit row (``recording.exported``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from media.exceptions import RecordingError
from media.export import export
from media.recorder import read_manifest, rebuild_manifest
from teleconsult.config import Config, ConfigError, add_config_arguments, load_config
from teleconsult.trail import TrailError, record_export

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


def participant_names(config: Config, room: str) -> dict[str, str]:
    """Participant id -> name for the room, from its ``join`` audit rows (empty when the
    store cannot be read: the ids are shown instead)."""
    from sqlalchemy.exc import SQLAlchemyError

    from store.audit import AuditQuery, query
    from store.engine import StoreConfigError
    from store.stores import open_store

    try:
        stores = open_store(data_dir=config.data_dir, database_url=config.backends.database())
    except (StoreConfigError, SQLAlchemyError):
        return {}
    names: dict[str, str] = {}
    try:
        with stores.engine.connect() as conn:
            for row in query(conn, AuditQuery(room=room, action="join"), limit=10_000):
                detail = row.detail_object() or {}
                if isinstance(detail, dict) and detail.get("participant_id"):
                    names[str(detail["participant_id"])] = str(detail.get("name") or row.actor)
    except SQLAlchemyError:
        return {}
    finally:
        stores.close()
    return names


def summaries(root: Path, config: Config | None = None) -> list[dict[str, Any]]:
    """One summary per recording folder under ``root``, oldest first (participants by
    name where the audit trail of ``config``'s store knows them)."""
    found: list[dict[str, Any]] = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        try:
            # A recording cut by a crash: its tracks as the files hold them.
            manifest = rebuild_manifest(directory)
        except RecordingError as error:
            found.append({"id": directory.name, "state": "unreadable", "error": str(error)})
            continue
        names = {} if config is None else participant_names(config, manifest.room_id)
        found.append(
            {
                "id": manifest.recording_id,
                "room": manifest.room_id,
                "state": str(manifest.state),
                "started_utc": manifest.started_utc,
                "participants": sorted(manifest.participants),
                "names": [names.get(p, p) for p in sorted(manifest.participants)],
                "files": len(manifest.tracks),
                "duration_s": max((t.duration_s for t in manifest.tracks), default=0.0),
                "error": manifest.error,
            }
        )
    return found


def run_list(args: argparse.Namespace) -> int:
    """List the recordings."""
    try:
        config = load_config(args.config, data_dir=args.data_dir)
        found = summaries(config.data_dir / "recordings", config)
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
            f"{s['files']:5d}  {s['duration_s']:10.1f}  {', '.join(s['names'])}"
        )
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Export one recording."""
    try:
        config = load_config(args.config, data_dir=args.data_dir)
        root = config.data_dir / "recordings"
        directory = root / args.recording
        # A recording id is a folder's own name: no path, not "." or "..".
        name = args.recording
        if name in ("", ".", "..") or Path(name).name != name or not directory.is_dir():
            raise RecordingError(f"no recording {args.recording!r} in {root}")
        room = read_manifest(directory).room_id
        export(directory, args.out, names=participant_names(config, room))
    except (ConfigError, RecordingError, OSError) as error:
        print(f"teleconsult recording export: {error}", file=sys.stderr)
        return 1
    # No recording leaves without a trace: the file goes again if the trail cannot say so.
    try:
        record_export(
            config, "recording.exported", f"recording:{args.recording}",
            details={"room": room, "format": args.out.suffix.lstrip(".")},
        )  # fmt: skip
    except TrailError as error:
        args.out.unlink(missing_ok=True)
        print(f"teleconsult recording export: refused, {error}", file=sys.stderr)
        return 1
    print(args.out)
    return 0
