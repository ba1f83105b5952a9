"""The directory's records validate in their constructors."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from consults.directory import (
    AdminScope,
    ApiToken,
    Credentials,
    Device,
    Institution,
    Level,
    LoginSession,
    Person,
    Role,
    ServiceKind,
    ServiceRelation,
)
from consults.errors import ConsultsError, InvalidInput
from consults.repositories import AuditEvent, PageRequest, PeopleFilter

SHA = "ab" * 32


def person(**changes: object) -> Person:
    """A valid doctor with some fields changed."""
    fields: dict[str, object] = {
        "id": "p1",
        "username": "zhang.san",
        "display_name": "张三",
        "institution": "county-1",
        "roles": frozenset({Role.DOCTOR}),
    }
    fields.update(changes)
    return Person(**fields)  # type: ignore[arg-type]


def test_levels_order_from_province_down() -> None:
    """A province may parent a city, a village may parent nothing, a level not itself."""
    assert Level.PROVINCE.may_parent(Level.CITY)
    assert Level.COUNTY.may_parent(Level.VILLAGE)
    assert not Level.VILLAGE.may_parent(Level.TOWNSHIP)
    assert not all(level.may_parent(level) for level in Level)
    assert [level.rank for level in Level] == sorted(level.rank for level in Level)


@pytest.mark.parametrize(
    "code", ["", "a b", "x;DROP TABLE people", "'or'1'='1", "-x", "a" * 65, "县医院"]
)
def test_institution_code_refuses_outside_the_alphabet(code: str) -> None:
    """Codes are ASCII letters, digits, '.', '_', '-', 1 to 64 characters."""
    with pytest.raises(InvalidInput) as caught:
        Institution(code, "某县人民医院", Level.COUNTY)
    assert caught.value.field == "code"


def test_institution_cannot_be_its_own_parent() -> None:
    """A loop of one is refused in the constructor."""
    with pytest.raises(InvalidInput, match="parent"):
        Institution("c1", "Clinic", Level.TOWNSHIP, parent="c1")


@pytest.mark.parametrize("name", ["张三", "Zhang San", "Jean-Luc Picard", "阿依古丽·买买提"])
def test_display_names_in_chinese_or_latin(name: str) -> None:
    """Chinese, Latin and the usual joiners are display names."""
    assert person(display_name=name).display_name == name


@pytest.mark.parametrize(
    "name", ["", " 张三", "张三\n", "Robert'); DROP TABLE--", "x<script>", "٣"]
)
def test_display_names_refused(name: str) -> None:
    """Blank ends, control characters, punctuation and other scripts are refused."""
    with pytest.raises(InvalidInput) as caught:
        person(display_name=name)
    assert caught.value.field == "display_name"


def test_admin_scope_iff_admin() -> None:
    """An admin has a scope, and only an admin has one."""
    with pytest.raises(InvalidInput):
        person(roles=frozenset({Role.ADMIN}))
    with pytest.raises(InvalidInput):
        person(admin_scope=AdminScope.INSTITUTION)
    admin = person(roles=frozenset({Role.ADMIN, Role.DOCTOR}), admin_scope=AdminScope.DEPLOYMENT)
    assert admin.is_deployment_admin
    assert admin.is_admin
    assert not person().is_admin


@pytest.mark.parametrize("username", ["Zhang", "a", "x y", "a'--", "张三"])
def test_usernames_are_lowercase_ascii(username: str) -> None:
    """Usernames refuse capitals, one letter, blanks, quotes and non-ASCII."""
    with pytest.raises(InvalidInput):
        person(username=username)


def test_records_refuse_bad_values() -> None:
    """Each record refuses what it cannot hold, through one exception tree."""
    bad: list[Callable[[], object]] = [
        lambda: person(roles=frozenset()),
        lambda: Device("cart 1", "Cart", "c1"),
        lambda: ServiceRelation("c1", "c1", ServiceKind.ECG),
        lambda: Credentials("p1", "plaintext"),
        lambda: Credentials("p1", "$argon2id$x", failed_logins=-1),
        lambda: LoginSession("s1", "p1", "nothex", 0.0, 1.0),
        lambda: LoginSession("s1", "p1", SHA, 10.0, 1.0),
        lambda: ApiToken("t1", "p1", "", SHA, 0.0),
        lambda: AuditEvent(0.0, "Login Failed"),
        lambda: AuditEvent(0.0, "auth.login", outcome="maybe"),
        lambda: PageRequest(limit=0),
        lambda: PageRequest(offset=-1),
        lambda: PeopleFilter(search="x" * 101),
    ]
    for make in bad:
        with pytest.raises(ConsultsError):
            make()


def test_session_and_token_validity() -> None:
    """A session is valid before it expires and until it is revoked; a token likewise."""
    session = LoginSession("s1", "p1", SHA, 0.0, 100.0)
    assert session.valid_at(99.0)
    assert not session.valid_at(100.0)
    assert not LoginSession("s1", "p1", SHA, 0.0, 100.0, revoked_at_s=5.0).valid_at(6.0)
    token = ApiToken("t1", "p1", "HIS", SHA, 0.0)
    assert token.valid_at(1e9)
    assert not ApiToken("t1", "p1", "HIS", SHA, 0.0, expires_at_s=10.0).valid_at(10.0)


def test_only_a_deployment_admin_may_have_no_institution() -> None:
    """The first admin belongs to no institution; anyone else must belong to one."""
    admin = person(
        institution=None, roles=frozenset({Role.ADMIN}), admin_scope=AdminScope.DEPLOYMENT
    )
    assert admin.institution is None
    with pytest.raises(InvalidInput) as caught:
        person(institution=None)
    assert caught.value.field == "institution"
    with pytest.raises(InvalidInput):
        person(institution=None, roles=frozenset({Role.ADMIN}), admin_scope=AdminScope.INSTITUTION)
