"""The consult repository on SQLite and PostgreSQL: the tables at head, signing keys
sealed at rest, signed documents kept byte for byte, a signature race decided by the
store, and attachment bytes private in the data dir."""

from __future__ import annotations

import base64
import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, MetaData, Table, insert, inspect, select

from consults.errors import Conflict
from consults.lifecycle import ConsultState
from consults.repositories import AuditEvent
from consults.signatures import KeyPair, canonical_json
from store.consult_schema import opinion_versions, signer_keys
from store.consults import FileBlobStore, SqlConsultRepository
from store.engine import open_engine
from store.migrate import upgrade
from store.schema import metadata
from tests.consults.test_service import reach
from tests.consults.test_service_world import World, world
from tests.pg import Database

__all__ = ["world"]


def test_the_consult_tables_are_in_the_schema_and_at_head(engine: Engine) -> None:
    """store.schema's MetaData holds the consult tables, and head creates them."""
    names = {
        "consults",
        "consult_experts",
        "consult_attachments",
        "opinion_drafts",
        "opinion_versions",
        "signer_keys",
        "referral_slots",
        "referrals",
    }
    assert names <= set(metadata.tables)
    assert names <= set(inspect(engine).get_table_names())


def test_a_signing_key_is_sealed_at_rest(world: World) -> None:
    """The private key is not in the table in any form we can find; it reads back."""
    repository = world.repository
    person = world["chen.expert"]
    keys = KeyPair.generate()
    repository.add_signer_key(person.id, keys, AuditEvent(at_s=0.0, action="opinion.key_created"))
    with world.stores.engine.connect() as conn:
        sealed = conn.execute(select(signer_keys.c.private_key_sealed)).scalar_one()
    assert keys.private_key.hex() not in sealed
    assert base64.b64encode(keys.private_key).decode() not in sealed
    assert repository.signer_key(person.id) == keys
    with pytest.raises(Conflict):
        repository.add_signer_key(
            person.id, KeyPair.generate(), AuditEvent(at_s=0.0, action="opinion.key_created")
        )


def test_a_signed_version_is_kept_as_the_bytes_signed(world: World) -> None:
    """The stored document is its canonical JSON; a second version 1 is refused (two
    signatures racing), the consult left as the first signature made it."""
    consult_id = reach(world, ConsultState.REPORTED)
    versions = world.repository.versions(consult_id)
    with world.stores.engine.connect() as conn:
        stored = conn.execute(select(opinion_versions.c.document)).scalar_one()
    assert stored.encode() == canonical_json(versions[0].document)
    with pytest.raises(Conflict):
        world.repository.add_version(versions[0], AuditEvent(at_s=0.0, action="consult.sign"))
    assert len(world.repository.versions(consult_id)) == 1


def test_attachment_bytes_are_private_and_keys_checked(tmp_path: Path) -> None:
    """Files 0600 in a 0700 folder, written once; a key that could leave the folder is
    refused."""
    blobs = FileBlobStore(tmp_path / "attachments")
    blobs.put("abc123/def456", b"data")
    path = tmp_path / "attachments" / "abc123" / "def456"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "attachments").stat().st_mode) == 0o700
    assert blobs.get("abc123/def456") == b"data"
    with pytest.raises(FileExistsError):
        blobs.put("abc123/def456", b"other")
    for key in ("../x", "a/../../b", "", "a//b", "/etc/passwd"):
        with pytest.raises(ValueError, match="blob key"):
            blobs.put(key, b"x")


def test_the_repository_opens_on_an_engine(database: Database) -> None:
    """A repository on a fresh engine at head lists nothing and finds nothing."""
    engine = open_engine(url=database.url)
    upgrade(engine)
    repository = SqlConsultRepository(engine)
    assert repository.get("nothing") is None
    assert repository.versions("nothing") == []
    engine.dispose()


def test_a_store_at_0100_upgrades_with_its_consults(database: Database) -> None:
    """A database left at revision 0100 with a consult in it reaches head (0100b to g add
    tables, columns and indexes only) and the consult reads back whole."""
    engine = open_engine(url=database.url)
    upgrade(engine, "0100")
    old = MetaData()
    table = Table("consults", old, autoload_with=engine)
    institutions = Table("institutions", old, autoload_with=engine)
    now = datetime.now(UTC).replace(microsecond=0)
    row = {
        "id": "c0100",
        "state": "submitted",
        "priority": "urgent",
        "mode": "async",
        "requester": "li.doctor",
        "clinic": "village-1",
        "centre": "county-1",
        "created_at": now,
        "submitted_at": now,
        "accept_due": now + timedelta(hours=2),
        "expires_at": now + timedelta(hours=6),
        "escalated_at": None,
        "revision": 1,
        "patient_id": "p1",
        "patient_name": "张三",
        "patient_sex": "male",
        "patient_birth_date": date(1960, 5, 1),
        "record_number": "MZ-1",
        "reason": "胸痛",
        "purpose": "诊断",
        "summary": "摘要",
        "specialty": "心内科",
        "consent_kind": "written",
        "consent_recorded_by": "li.doctor",
        "consent_time": now,
        "search_text": "张三 mz-1",
    }
    with engine.begin() as conn:
        for code, level, parent in (
            ("county-1", "county", None),
            ("village-1", "village", "county-1"),
        ):
            conn.execute(
                insert(institutions).values(
                    code=code, name=code, level=level, parent=parent, created_at=now
                )
            )
        conn.execute(insert(table).values(**{k: v for k, v in row.items() if k in table.c}))
    upgrade(engine)
    record = SqlConsultRepository(engine).get("c0100")
    assert record is not None
    assert record.consult.state is ConsultState.SUBMITTED
    assert record.request.patient_name == "张三"
    assert record.request.proposed_times == ()
    assert record.warn_at is None
    assert record.remind_at is None
    engine.dispose()
