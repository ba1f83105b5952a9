"""``teleconsult audit verify`` and ``teleconsult audit query``: the audit trail.

``verify`` walks the whole hash chain (:mod:`store.audit`) and exits 0 when it holds,
printing the row count and the head hash (keep it somewhere else: a later
``verify --expect-head HASH`` proves the trail was not rewritten since); 1 naming the
first row that was changed, removed or moved; 2 when the database cannot be read.

``query`` prints one page of rows matching every filter given (actor, action, target,
patient, consult, room, institution, a time range), oldest first or
``--newest-first``, as JSON lines (default) or ``--format table``. ``--after SEQ``
continues from the last row of a previous page.

Both read the database the server writes to: ``--database-url`` (or the environment's
``TELECONSULT_DATABASE_URL``) when given, else ``DATA_DIR/teleconsult.sqlite3``.
Neither creates it. They import only the standard library here and SQLAlchemy when run,
so they start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["add_database_arguments", "open_existing", "register", "run_query", "run_verify"]

DATABASE_URL_ENV: Final = "TELECONSULT_DATABASE_URL"
DEFAULT_DATA_DIR: Final = Path("var")
TABLE_COLUMNS: Final = (
    "seq",
    "time",
    "actor",
    "action",
    "target",
    "room",
    "patient",
    "consult",
    "institution",
    "detail",
)


class CommandError(Exception):
    """What the command cannot do, said to the user; exit status 2."""


def add_database_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data-dir`` and ``--database-url``: where the store is."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="the server's data folder, for SQLite (default ./var)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(DATABASE_URL_ENV),
        help=f"the database (postgresql+psycopg://...); default ${DATABASE_URL_ENV}, "
        "else SQLite in the data folder",
    )


def open_existing(args: argparse.Namespace) -> Engine:
    """An engine on the store the arguments name, which must exist and have a schema.

    Raises
    ------
    CommandError
        No database there, an unusable URL, or an empty database.
    """
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from store.engine import DB_FILE, StoreConfigError, open_engine

    url: str | None = args.database_url
    if not url:
        path = args.data_dir / DB_FILE
        if not path.is_file():
            raise CommandError(f"no database at {path} (give --data-dir or --database-url)")
    try:
        engine = open_engine(data_dir=args.data_dir, url=url)
        tables = set(inspect(engine).get_table_names())
    except StoreConfigError as exc:
        raise CommandError(str(exc)) from exc
    except SQLAlchemyError as exc:
        raise CommandError(f"cannot open the database: {type(exc).__name__}") from exc
    if not {"audit", "audit_head"} <= tables:
        engine.dispose()
        raise CommandError("the database has no audit trail (it was never set up)")
    return engine


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the ``audit`` command group (``verify``, ``query``)."""
    group = commands.add_parser("audit", help="verify and query the audit trail")
    sub = group.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)

    check = sub.add_parser("verify", help="check the hash chain; name the first bad row")
    add_database_arguments(check)
    check.add_argument(
        "--expect-head", metavar="HASH", help="a head hash printed by an earlier verify"
    )
    check.add_argument("--json", action="store_true", help="the report as one JSON object")
    check.set_defaults(handler=run_verify)

    find = sub.add_parser("query", help="print the rows matching every filter given")
    add_database_arguments(find)
    for name in ("actor", "action", "target", "patient", "consult", "room", "institution"):
        find.add_argument(f"--{name}", help=f"rows whose {name} is exactly this")
    find.add_argument("--since", metavar="TIME", help="from this time on (RFC 3339, inclusive)")
    find.add_argument("--until", metavar="TIME", help="before this time (RFC 3339, exclusive)")
    find.add_argument("--limit", type=int, default=100, help="rows at most (default 100)")
    find.add_argument("--after", type=int, metavar="SEQ", help="continue after this seq")
    find.add_argument("--newest-first", action="store_true", help="newest rows first")
    find.add_argument("--format", choices=("jsonl", "table"), default="jsonl")
    find.set_defaults(handler=run_query)


def run_verify(args: argparse.Namespace) -> int:
    """Verify the chain: 0 holds, 1 broken (first bad row named), 2 cannot read."""
    from sqlalchemy.exc import SQLAlchemyError

    from store.audit import verify

    try:
        engine = open_existing(args)
    except CommandError as exc:
        print(f"audit verify: {exc}", file=sys.stderr)
        return 2
    try:
        report = verify(engine, expect_head=args.expect_head)
    except SQLAlchemyError as exc:
        print(f"audit verify: cannot read the trail: {type(exc).__name__}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    if args.json:
        document = {
            "ok": report.ok,
            "rows": report.rows,
            "head_seq": report.head_seq,
            "head_hash": report.head_hash,
            "first_bad_seq": report.first_bad_seq,
            "problem": report.problem,
        }
        print(json.dumps(document))
    elif report.ok:
        print(
            f"audit chain holds: {report.rows} rows, head seq {report.head_seq}, "
            f"hash {report.head_hash}"
        )
    else:
        print(f"audit chain BROKEN at seq {report.first_bad_seq}: {report.problem}")
    return 0 if report.ok else 1


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text.replace("\t", " ").replace("\n", " ")


def run_query(args: argparse.Namespace) -> int:
    """Print one page of matching rows; 2 for bad arguments or an unreadable database."""
    from sqlalchemy.exc import SQLAlchemyError

    from store.audit import AuditQuery, parse_time, query

    try:
        if not 1 <= args.limit <= 100_000:
            raise CommandError("--limit must be 1 to 100000")
        times = {}
        for name in ("since", "until"):
            text: str | None = vars(args)[name]
            try:
                times[name] = None if text is None else parse_time(text)
            except ValueError as exc:
                raise CommandError(f"--{name}: not an RFC 3339 time with a zone: {text}") from exc
        what = AuditQuery(
            actor=args.actor,
            action=args.action,
            target=args.target,
            patient=args.patient,
            consult=args.consult,
            room=args.room,
            institution=args.institution,
            since=times["since"],
            until=times["until"],
        )
        engine = open_existing(args)
    except CommandError as exc:
        print(f"audit query: {exc}", file=sys.stderr)
        return 2
    try:
        with engine.connect() as conn:
            rows = query(
                conn, what, limit=args.limit, newest_first=args.newest_first, after_seq=args.after
            )
    except SQLAlchemyError as exc:
        print(f"audit query: cannot read the trail: {type(exc).__name__}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    documents = [row.to_json() for row in rows]
    if args.format == "jsonl":
        for document in documents:
            print(json.dumps(document, ensure_ascii=False))
        return 0
    table = [list(TABLE_COLUMNS)] + [
        [_cell(document[column]) for column in TABLE_COLUMNS] for document in documents
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(TABLE_COLUMNS))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    return 0
