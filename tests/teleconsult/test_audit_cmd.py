"""``teleconsult audit verify`` and ``query`` on a real store; tampering done with the
real ``sqlite3`` and ``psql`` command-line clients."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from store.audit import AuditRecord, append
from store.engine import DB_FILE, open_engine
from store.migrate import upgrade
from teleconsult.cli import main
from tests.pg import Database, database

__all__ = ["database"]

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)

TAMPERING = {
    "change": ("UPDATE audit SET actor = 'mallory' WHERE seq = 3;", 3),
    "delete": ("DELETE FROM audit WHERE seq = 5;", 5),
    "reorder": (
        "UPDATE audit SET seq = -1 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 6;"
        " UPDATE audit SET seq = 6 WHERE seq = -1;",
        2,
    ),
    "truncate": ("DELETE FROM audit WHERE seq >= 7;", 7),
}


def populate(database: Database, rows: int = 8) -> None:
    engine = open_engine(url=database.url)
    upgrade(engine)
    with engine.begin() as conn:
        append(
            conn,
            [
                AuditRecord(
                    time=T0 + timedelta(seconds=i),
                    actor=f"doctor:{i % 2}",
                    action="join" if i % 3 else "ecg.viewed",
                    room="c-1",
                    patient=f"p{i % 4}",
                    detail={"n": i, "名": "王"},
                )
                for i in range(rows)
            ],
        )
    engine.dispose()


def target_args(database: Database) -> list[str]:
    if database.kind == "sqlite":
        return ["--data-dir", str(database.data_dir)]
    return ["--database-url", database.url]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tamper(database: Database, statements: str) -> None:
    """Change the database behind the store's back, with the database's own client."""
    if database.kind == "sqlite":
        if shutil.which("sqlite3") is None:
            pytest.skip("the sqlite3 command-line client is not installed (make sysdeps)")
        argv = ["sqlite3", str(database.data_dir / DB_FILE), statements]
    else:
        if shutil.which("psql") is None:
            pytest.skip("psql is not installed (make sysdeps)")
        argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database.libpq_url]
        argv += ["-c", f"BEGIN; {statements} COMMIT;"]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


def test_verify_passes_on_an_intact_chain(
    database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    """An untouched trail verifies: exit 0, rows and head printed."""
    populate(database)
    code, out, _ = run(capsys, "audit", "verify", *target_args(database))
    assert code == 0
    assert "holds: 8 rows, head seq 8" in out
    code, out, _ = run(capsys, "audit", "verify", "--json", *target_args(database))
    report = json.loads(out)
    assert (code, report["ok"], report["rows"]) == (0, True, 8)
    head = report["head_hash"]
    args = ("audit", "verify", "--expect-head", head, *target_args(database))
    assert run(capsys, *args)[0] == 0


@pytest.mark.parametrize("how", sorted(TAMPERING))
def test_verify_names_the_row_changed_removed_or_reordered(
    database: Database, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    """A row edited, deleted, moved or cut off with sqlite3/psql is named; exit 1."""
    populate(database)
    statements, seq = TAMPERING[how]
    tamper(database, statements)
    code, out, _ = run(capsys, "audit", "verify", *target_args(database))
    assert code == 1
    assert f"BROKEN at seq {seq}:" in out


def test_query_filters_as_json_lines_and_table(
    database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    """Query by patient and time gives JSON lines; the table has a header and a row each."""
    populate(database)
    code, out, _ = run(
        capsys,
        "audit",
        "query",
        "--patient",
        "p1",
        "--since",
        "2026-12-02T09:00:01Z",
        *target_args(database),
    )
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["seq"] for r in rows] == [2, 6]
    assert rows[0]["detail"] == {"n": 1, "名": "王"}
    assert rows[0]["time"] == "2026-12-02T09:00:01.000000Z"
    code, out, _ = run(
        capsys,
        "audit",
        "query",
        "--action",
        "ecg.viewed",
        "--newest-first",
        "--format",
        "table",
        *target_args(database),
    )
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split()[:4] == ["seq", "time", "actor", "action"]
    assert [line.split()[0] for line in lines[1:]] == ["7", "4", "1"]


def test_bad_arguments_and_missing_database_exit_2(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing database or a time without a zone: exit 2 with a message, no traceback."""
    code, _, err = run(capsys, "audit", "verify", "--data-dir", f"{tmp_path}/none")
    assert code == 2
    assert "no database" in err
    code, _, err = run(
        capsys, "audit", "query", "--since", "2026-12-02 09:00", "--data-dir", f"{tmp_path}"
    )
    assert code == 2
    assert "--since" in err


def test_commands_import_neither_numpy_nor_the_server() -> None:
    """The audit and backup command modules load the store without numpy."""
    probe = (
        "import sys, teleconsult.audit_cmd, teleconsult.backup_cmd, store.audit, "
        "store.engine, store.migrate, store.sessions\n"
        "heavy = sorted(m for m in ('numpy', 'scipy', 'numba', 'aiortc') if m in sys.modules)\n"
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
