"""The directory's tree and relations are read once and kept until a change moves the
directory's version: a change made through another repository (another node, another
process) on the same database is seen at the next read, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Engine, event

from consults.directory import (
    Institution,
    Level,
    RelationOverride,
    ServiceKind,
    ServiceRelation,
)
from store.directory import SqlDirectoryRepository


def test_a_change_anywhere_is_seen_and_nothing_else_is_reread(engine: Engine) -> None:
    reader, writer = SqlDirectoryRepository(engine), SqlDirectoryRepository(engine)
    writer.add_institution(Institution("city", "某市医院", Level.CITY))
    writer.add_institution(Institution("county", "某县医院", Level.COUNTY, parent="city"))
    assert [i.code for i in reader.all_institutions()] == ["city", "county"]
    assert reader.all_relations() == ()
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    first = reader.all_institutions()
    assert reader.all_institutions() is first  # kept: only the version was read
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2  # one per call: the version, nothing else
    assert all("FROM directory_version" in s for s in selects)

    writer.update_institution(Institution("county", "新名字", Level.COUNTY, parent="city"))
    assert [i.name for i in reader.all_institutions()] == ["某市医院", "新名字"]
    relation = ServiceRelation("county", "city", ServiceKind.ECG, RelationOverride.ADDED)
    writer.set_relation(relation)
    assert reader.all_relations() == (relation,)
    writer.clear_relation("county", "city", ServiceKind.ECG)
    assert reader.all_relations() == ()
