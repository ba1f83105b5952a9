"""Credentials, sessions, tokens and the audit sink on SQLite and PostgreSQL, alone and
under the real accounts logic (consults.accounts)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import Engine, select

from consults.accounts import AccountPolicy, Accounts, DirectoryAdmin, NewPerson
from consults.directory import (
    ApiToken,
    Credentials,
    Institution,
    Level,
    LoginSession,
    Person,
    Role,
)
from consults.errors import AccountLocked, LoginFailed, NotFound, RepositoryError
from consults.repositories import (
    AuditEvent,
    AuditSink,
    CredentialRepository,
    DirectoryRepository,
    SessionRepository,
)
from store.accounts import SqlAuditSink, SqlCredentialRepository, SqlSessionRepository
from store.audit import AuditQuery, query, verify
from store.directory import SqlDirectoryRepository
from store.schema import credentials
from store.secrets import SecretBox, SecretError, load_or_create_key
from store.stores import Stores, open_store
from tests.pg import Database

HASH = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
PASSWORD = "correct horse battery"


def one_person(engine: Engine, box: SecretBox | None = None) -> None:
    repo = SqlDirectoryRepository(engine, secrets=box)
    repo.add_institution(Institution("town", "某镇卫生院", Level.TOWNSHIP))
    repo.add_person(
        Person("p1", "doc", "李医生", "town", frozenset({Role.DOCTOR})),
        Credentials("p1", HASH, totp_secret="JBSWY3DPEHPK3PXP"),
    )


def test_counters_lock_and_totp_steps(engine: Engine) -> None:
    """Failures count atomically, lock and unlock, and a TOTP step is accepted once."""
    one_person(engine)
    repo: CredentialRepository = SqlCredentialRepository(engine)
    assert [repo.record_failed_login("p1", 1.0) for _ in range(3)] == [1, 2, 3]
    repo.lock("p1", 1_800_000_000.5)
    found = repo.get_credentials("p1")
    assert found is not None
    assert (found.failed_logins, found.locked_at_s) == (3, 1_800_000_000.5)
    repo.unlock("p1")
    found = repo.get_credentials("p1")
    assert found is not None
    assert (found.failed_logins, found.locked) == (0, False)
    assert repo.accept_totp_step("p1", 100)
    assert not repo.accept_totp_step("p1", 100)
    assert not repo.accept_totp_step("p1", 99)
    assert repo.accept_totp_step("p1", 101)
    repo.set_totp_secret("p1", None)
    found = repo.get_credentials("p1")
    assert found is not None
    assert (found.totp_secret, found.totp_last_step) == (None, None)
    repo.set_password_hash("p1", HASH + "x")
    assert repo.get_credentials("p1") == Credentials("p1", HASH + "x")
    with pytest.raises(NotFound):
        repo.record_failed_login("ghost", 1.0)
    assert repo.get_credentials("ghost") is None
    repo.set_totp_required_roles(frozenset({Role.ADMIN, Role.EXPERT}))
    assert repo.totp_required_roles() == frozenset({Role.ADMIN, Role.EXPERT})
    repo.set_totp_required_roles(frozenset())
    assert repo.totp_required_roles() == frozenset()


def test_racing_totp_logins_accept_a_step_once(engine: Engine) -> None:
    """Eight threads offering the same step at once: exactly one is accepted."""
    one_person(engine)
    repo = SqlCredentialRepository(engine)
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def offer() -> None:
        barrier.wait()
        results.append(repo.accept_totp_step("p1", 500))

    workers = [threading.Thread(target=offer) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(results) == [False] * 7 + [True]


def test_totp_secret_sealed_at_rest(engine: Engine) -> None:
    """With a key the stored secret is ciphertext; it opens only with that key."""
    box = SecretBox(os.urandom(32))
    one_person(engine, box)
    with engine.connect() as conn:
        stored = conn.execute(select(credentials.c.totp_secret)).scalar_one()
    assert stored.startswith("aesgcm1:")
    assert "JBSWY3DPEHPK3PXP" not in stored
    found = SqlCredentialRepository(engine, secrets=box).get_credentials("p1")
    assert found is not None
    assert found.totp_secret == "JBSWY3DPEHPK3PXP"
    with pytest.raises(RepositoryError):
        SqlCredentialRepository(engine).get_credentials("p1")
    with pytest.raises(RepositoryError):
        SqlCredentialRepository(engine, secrets=SecretBox(os.urandom(32))).get_credentials("p1")


def test_key_file_is_made_once_and_private(tmp_path: Path) -> None:
    """The key file is created 0600 with 32 random bytes, then read back the same."""
    path = tmp_path / "totp.key"
    key = load_or_create_key(path)
    assert len(key) == 32
    assert load_or_create_key(path) == key
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_bytes(b"short")
    with pytest.raises(SecretError):
        load_or_create_key(path)


def test_sessions_and_tokens(engine: Engine) -> None:
    """Sessions and API tokens are found by hash and revoked; open ones counted."""
    one_person(engine)
    repo: SessionRepository = SqlSessionRepository(engine)
    for i in range(3):
        repo.add_session(LoginSession(f"s{i}", "p1", f"{i:064x}", 100.0 + i, 200.0 + i))
    assert repo.session_by_sha256(f"{1:064x}") == LoginSession(
        "s1", "p1", f"{1:064x}", 101.0, 201.0
    )
    repo.revoke_session("s0", 150.0)
    repo.revoke_session("s0", 160.0)
    repo.revoke_session("unknown", 160.0)
    revoked = repo.session_by_sha256(f"{0:064x}")
    assert revoked is not None
    assert revoked.revoked_at_s == 150.0
    assert repo.revoke_sessions_of("p1", 201.5) == 1  # s1 expired at 201, s2 open
    assert repo.session_by_sha256("f" * 64) is None
    for i in range(2):
        repo.add_api_token(ApiToken(f"t{i}", "p1", f"HIS {i}", f"{i + 10:064x}", 300.0 + i))
    assert [t.id for t in repo.list_api_tokens("p1")] == ["t1", "t0"]
    repo.revoke_api_token("t0", 400.0)
    token = repo.api_token_by_sha256(f"{10:064x}")
    assert token is not None
    assert token.revoked_at_s == 400.0
    with pytest.raises(NotFound):
        repo.revoke_api_token("ghost", 1.0)


def test_audit_sink_appends_chained_rows(engine: Engine) -> None:
    """Each event is one chained row with its outcome and details."""
    sink: AuditSink = SqlAuditSink(engine)
    sink.append(AuditEvent(1.8e9, "auth.login_failed", None, "person:p1", "denied"))
    sink.append(
        AuditEvent(1.8e9 + 1, "auth.login", "p1", institution="town", patient="pt-9", consult="c-3")
    )
    with engine.connect() as conn:
        rows = query(conn, AuditQuery())
    assert [(r.action, r.actor, r.institution, r.patient, r.consult) for r in rows] == [
        ("auth.login_failed", "", "", "", ""),
        ("auth.login", "p1", "town", "pt-9", "c-3"),
    ]
    assert rows[0].detail_object() == {"outcome": "denied"}
    assert verify(engine).ok


@pytest.fixture
def stores(database: Database) -> Iterator[Stores]:
    """Every repository on one fresh database."""
    made = open_store(
        data_dir=database.data_dir, database_url=database.url, totp_key=os.urandom(32)
    )
    yield made
    made.close()


def test_accounts_logic_over_the_sql_store(stores: Stores, tmp_path: Path) -> None:
    """The real accounts logic on the SQL store: first admin, people, login, lockout,
    TOTP once per step, every step audited in an intact chain."""
    now_s = [1_800_000_000.0]
    directory: DirectoryRepository = stores.directory
    accounts = Accounts(
        directory=directory,
        credentials=stores.credentials,
        sessions=stores.sessions,
        audit=stores.audit,
        policy=AccountPolicy(
            argon2_time_cost=1,
            argon2_memory_kib=1024,
            argon2_parallelism=1,
            lock_after_failures=3,
            account_burst=100,
        ),
        clock=lambda: now_s[0],
    )
    admin = DirectoryAdmin(accounts)
    root = admin.create_first_admin(username="root", display_name="Root", password=PASSWORD)
    admin.create_institution(root, code="county", name="某县医院", level=Level.COUNTY, parent=None)
    admin.create_institution(
        root, code="town", name="某镇卫生院", level=Level.TOWNSHIP, parent="county"
    )
    doctor = admin.create_person(
        root,
        NewPerson(
            username="doc",
            display_name="李医生",
            password=PASSWORD,
            roles=frozenset({Role.DOCTOR}),
            institution="town",
        ),
    )
    session = accounts.login("doc", PASSWORD)
    assert accounts.authenticate(session.token).person.id == doctor.id
    secret = accounts.enrol_totp(session.principal)
    now_s[0] += 60
    code = pyotp.TOTP(secret).at(now_s[0])
    assert accounts.login("doc", PASSWORD, totp=code).token
    with pytest.raises(LoginFailed):
        accounts.login("doc", PASSWORD, totp=code)  # the same step again
    # Failures are counted in the store until the account locks (within the policy's 3).
    outcomes = []
    for attempt in range(3):
        try:
            accounts.login("doc", f"wrong password {attempt}")
        except (LoginFailed, AccountLocked) as exc:
            outcomes.append(type(exc))
    assert AccountLocked in outcomes
    with pytest.raises(AccountLocked):
        accounts.login("doc", PASSWORD)
    admin.unlock(root, doctor.id)
    now_s[0] += 60
    assert accounts.login("doc", PASSWORD, totp=pyotp.TOTP(secret).at(now_s[0])).token
    with stores.engine.connect() as conn:
        actions = [r.action for r in query(conn, AuditQuery(), limit=1000)]
    assert "auth.login" in actions
    assert "auth.login_failed" in actions
    assert "auth.account_locked" in actions
    assert verify(stores.engine).ok
    assert stores.health() is None
    stores.check()
