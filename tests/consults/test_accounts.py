"""Accounts policy: login, throttling, lockout, TOTP, sessions, API tokens, devices and the
admin's changes to the directory, over the in-memory repositories."""

from __future__ import annotations

import time

import pyotp
import pytest

from consults.accounts import (
    API_TOKEN_PREFIX,
    DEVICE_PREFIX,
    SESSION_PREFIX,
    AccountPolicy,
    Accounts,
    DeviceCredentials,
    DirectoryAdmin,
    NewPerson,
    Throttle,
    check_csrf,
    check_password,
    csrf_token,
    token_sha256,
)
from consults.directory import AdminScope, Level, Person, Role
from consults.errors import (
    AccountLocked,
    Conflict,
    Forbidden,
    InvalidInput,
    LoginFailed,
    NotFound,
    PasswordRejected,
    SessionInvalid,
    Throttled,
    TokenRevoked,
    TotpRequired,
)
from consults.repositories import PageRequest
from tests.consults.memory import MemoryStore

FAST = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}
PASSWORD = "correct horse battery"


class Clock:
    """A clock the test moves by hand (injected, like the random source)."""

    def __init__(self, now_s: float = 1_800_000_000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def make(
    store: MemoryStore | None = None, clock: Clock | None = None, **policy: float
) -> tuple[Accounts, DirectoryAdmin, MemoryStore, Clock]:
    """Accounts and the directory over a memory store, with a cheap hasher."""
    store = store or MemoryStore()
    clock = clock or Clock()
    accounts = Accounts(
        directory=store,
        credentials=store,
        sessions=store,
        audit=store,
        policy=AccountPolicy(**{**FAST, **policy}),  # type: ignore[arg-type]
        clock=clock,
    )
    return accounts, DirectoryAdmin(accounts), store, clock


def seed(admin_dir: DirectoryAdmin) -> tuple[Person, Person]:
    """A deployment admin, a county with a township below it, and a doctor there."""
    root = admin_dir.create_first_admin(username="root", display_name="Root", password=PASSWORD)
    admin_dir.create_institution(
        root, code="county", name="某县医院", level=Level.COUNTY, parent=None
    )
    admin_dir.create_institution(
        root, code="town", name="某镇卫生院", level=Level.TOWNSHIP, parent="county"
    )
    doctor = admin_dir.create_person(
        root,
        NewPerson(
            username="doc",
            display_name="李医生",
            password=PASSWORD,
            roles=frozenset({Role.DOCTOR}),
            institution="town",
        ),
    )
    return root, doctor


def test_login_opens_a_session_stored_only_as_its_hash() -> None:
    """A right password opens a session; the store keeps the token's SHA-256, not it."""
    accounts, admin_dir, store, _ = make()
    seed(admin_dir)
    result = accounts.login("doc", PASSWORD)
    assert result.token.startswith(SESSION_PREFIX)
    assert result.principal.person.username == "doc"
    (session,) = [s for s in store.sessions.values() if s.person_id == result.principal.person.id]
    assert session.sha256 == token_sha256(result.token)
    assert result.token not in repr(store.__dict__)
    assert accounts.authenticate(result.token).person.id == result.principal.person.id
    assert store.actions()[-1] == "auth.login"


def test_unknown_user_and_wrong_password_fail_alike() -> None:
    """Both raise LoginFailed with one reason, and both are audited."""
    accounts, admin_dir, store, _ = make()
    seed(admin_dir)
    errors = []
    for username, password in [("nobody", PASSWORD), ("doc", "wrong password!")]:
        with pytest.raises(LoginFailed) as caught:
            accounts.login(username, password)
        errors.append((type(caught.value), caught.value.reason, caught.value.code))
    assert errors[0] == errors[1]
    assert store.actions()[-2:] == ["auth.login_failed", "auth.login_failed"]


def test_lockout_after_repeated_failures_until_an_admin_unlocks() -> None:
    """N failures lock the account (even the right password is refused, sessions end);
    an admin's unlock lets the person in again."""
    accounts, admin_dir, store, _ = make(lock_after_failures=3, account_burst=100)
    root, doctor = seed(admin_dir)
    open_session = accounts.login("doc", PASSWORD)
    token = accounts.create_token(open_session.principal, "HIS")
    with pytest.raises(LoginFailed):
        accounts.login("doc", "wrong password 1")
    with pytest.raises(LoginFailed):
        accounts.login("doc", "wrong password 2")
    with pytest.raises(AccountLocked):
        accounts.login("doc", "wrong password 3")
    assert "auth.account_locked" in store.actions()
    with pytest.raises(AccountLocked) as caught:
        accounts.login("doc", PASSWORD)
    assert "password" not in caught.value.reason.replace("failed logins", "")
    with pytest.raises(TokenRevoked):
        accounts.authenticate(open_session.token)
    with pytest.raises(AccountLocked):
        accounts.authenticate(token.secret)
    admin_dir.unlock(root, doctor.id)
    assert accounts.authenticate(token.secret).person.id == doctor.id
    assert accounts.login("doc", PASSWORD).principal.person.id == doctor.id
    assert store.creds[doctor.id].failed_logins == 0


def test_throttle_per_account_then_refills() -> None:
    """After the burst of failures the account is throttled, and refills with time."""
    accounts, admin_dir, _, clock = make(account_burst=2, account_refill_per_s=0.5)
    seed(admin_dir)
    for _ in range(2):
        with pytest.raises(LoginFailed):
            accounts.login("doc", "wrong password!")
    with pytest.raises(Throttled) as caught:
        accounts.login("doc", PASSWORD)
    assert caught.value.retry_after_s == pytest.approx(2.0)
    clock.now_s += caught.value.retry_after_s
    assert accounts.login("doc", PASSWORD).principal.person.username == "doc"


def test_throttle_per_address_spans_usernames() -> None:
    """Guessing many usernames from one address is throttled; another address is not."""
    accounts, admin_dir, _, _ = make(address_burst=3)
    seed(admin_dir)
    for name in ("a1", "a2", "a3"):
        with pytest.raises(LoginFailed):
            accounts.login(name, "whatever pass", address="192.0.2.1")
    with pytest.raises(Throttled):
        accounts.login("doc", PASSWORD, address="192.0.2.1")
    assert accounts.login("doc", PASSWORD, address="192.0.2.2").token


def test_throttle_forgets_the_oldest_keys() -> None:
    """The throttle remembers at most max_keys buckets."""
    throttle = Throttle(burst=1, refill_per_s=1e-9, max_keys=2, clock=Clock())
    for key in ("a", "b", "c"):
        throttle.failed(key)
    assert throttle.retry_after_s("a") == 0.0
    assert throttle.retry_after_s("c") > 0.0


def test_totp_enrolled_then_required_and_each_step_once() -> None:
    """After enrolment login needs the code; a code is accepted once; a wrong one fails."""
    accounts, admin_dir, _, clock = make()
    seed(admin_dir)
    first = accounts.login("doc", PASSWORD)
    secret = accounts.enrol_totp(first.principal)
    assert len(pyotp.TOTP(secret).now()) == 6
    with pytest.raises(TotpRequired):
        accounts.login("doc", PASSWORD)
    totp = pyotp.TOTP(secret)
    code = totp.at(clock.now_s)
    assert accounts.login("doc", PASSWORD, totp=code).token
    with pytest.raises(LoginFailed):
        accounts.login("doc", PASSWORD, totp=code)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    with pytest.raises(LoginFailed):
        accounts.login("doc", PASSWORD, totp=wrong)
    clock.now_s += 30
    assert accounts.login("doc", PASSWORD, totp=totp.at(clock.now_s)).token


def test_reenrolling_totp_needs_the_current_code() -> None:
    """A session cannot move an enrolled second factor without a valid current code."""
    accounts, admin_dir, _, clock = make()
    seed(admin_dir)
    session = accounts.login("doc", PASSWORD)
    secret = accounts.enrol_totp(session.principal)
    with pytest.raises(TotpRequired):
        accounts.enrol_totp(session.principal)
    clock.now_s += 30
    new_secret = accounts.enrol_totp(session.principal, pyotp.TOTP(secret).at(clock.now_s))
    assert new_secret != secret


def test_role_requiring_totp_restricts_until_enrolled() -> None:
    """A role that requires a second factor gives an unenrolled holder a restricted session."""
    accounts, admin_dir, _, _ = make()
    root, _ = seed(admin_dir)
    admin_dir.set_totp_required_roles(root, frozenset({Role.DOCTOR}))
    result = accounts.login("doc", PASSWORD)
    assert result.principal.must_enrol_totp
    accounts.enrol_totp(result.principal)
    assert not accounts.authenticate(result.token).must_enrol_totp


def test_rehash_on_login_when_parameters_change() -> None:
    """A hash of older parameters is replaced at the next successful login."""
    _, admin_dir, store, clock = make()
    _, doctor = seed(admin_dir)
    before = store.creds[doctor.id].password_hash
    stronger, _, _, _ = make(store, clock, argon2_time_cost=2)
    stronger.login("doc", PASSWORD)
    after = store.creds[doctor.id].password_hash
    assert after != before
    assert after.startswith("$argon2id$")
    assert ",t=2," in after
    assert stronger.login("doc", PASSWORD).token


def test_forged_expired_and_revoked_sessions() -> None:
    """Forged and revoked tokens are audited; an expired one is refused."""
    accounts, admin_dir, store, clock = make(session_lifetime_s=60)
    seed(admin_dir)
    with pytest.raises(SessionInvalid):
        accounts.authenticate(SESSION_PREFIX + "forged")
    assert store.actions()[-1] == "auth.session_invalid"
    result = accounts.login("doc", PASSWORD)
    accounts.logout(result.principal)
    with pytest.raises(TokenRevoked):
        accounts.authenticate(result.token)
    assert store.actions()[-1] == "auth.revoked_token_used"
    later = accounts.login("doc", PASSWORD)
    clock.now_s += 61
    with pytest.raises(SessionInvalid):
        accounts.authenticate(later.token)
    with pytest.raises(SessionInvalid):
        accounts.authenticate("eyJhbGciOiJIUzI1NiJ9.e30.x")


def test_api_tokens_minted_listed_revoked() -> None:
    """An API token authenticates until revoked; only its owner revokes it."""
    accounts, admin_dir, store, _ = make()
    _root, _ = seed(admin_dir)
    doc = accounts.login("doc", PASSWORD).principal
    minted = accounts.create_token(doc, "HIS link")
    assert minted.secret.startswith(API_TOKEN_PREFIX)
    assert minted.record.sha256 == token_sha256(minted.secret)
    via_token = accounts.authenticate(minted.secret)
    assert via_token.api_token is not None
    assert via_token.person.id == doc.person.id
    with pytest.raises(Forbidden):
        accounts.create_token(via_token, "from a token")
    root_principal = accounts.login("root", PASSWORD).principal
    with pytest.raises(NotFound):
        accounts.revoke_token(root_principal, minted.record.id)
    accounts.revoke_token(doc, minted.record.id)
    with pytest.raises(TokenRevoked):
        accounts.authenticate(minted.secret)
    assert [t.id for t in accounts.list_tokens(doc)] == [minted.record.id]
    assert "auth.token_created" in store.actions()
    assert "auth.token_revoked" in store.actions()


def test_password_change_ends_sessions_and_checks_the_old_one() -> None:
    """A wrong old password fails; a change ends the old sessions and opens a new one."""
    accounts, admin_dir, _, _ = make()
    seed(admin_dir)
    result = accounts.login("doc", PASSWORD)
    with pytest.raises(LoginFailed):
        accounts.change_password(result.principal, "not it at all", "another good one")
    with pytest.raises(PasswordRejected):
        accounts.change_password(result.principal, PASSWORD, "short")
    renewed = accounts.change_password(result.principal, PASSWORD, "another good one")
    assert renewed is not None
    with pytest.raises(TokenRevoked):
        accounts.authenticate(result.token)
    assert accounts.authenticate(renewed.token).person.username == "doc"
    with pytest.raises(LoginFailed):
        accounts.login("doc", PASSWORD)
    assert accounts.login("doc", "another good one").token


@pytest.mark.parametrize(
    "password",
    [
        "short7!",
        "1234567890123",
        "qwertyuiop",
        "aaaaaaaaaaaa",
        "li.doctor!",
        "x" * 300,
        "bad\x00pass word",
    ],
)
def test_password_rules_refuse(password: str) -> None:
    """Too short, digits only, common, repetitive, containing the username, too long."""
    with pytest.raises(PasswordRejected):
        check_password(AccountPolicy(), password, username="li.doctor", display_name="李医生")


def test_csrf_token_bound_to_its_session() -> None:
    """Each session has its own CSRF token; another session's or none is refused."""
    a, b = SESSION_PREFIX + "a" * 43, SESSION_PREFIX + "b" * 43
    assert check_csrf(a, csrf_token(a))
    assert not check_csrf(a, csrf_token(b))
    assert not check_csrf(a, None)
    assert not check_csrf(a, "")


def test_device_credentials_verified_and_revoked() -> None:
    """A registered cart's credential verifies until the cart is revoked."""
    _accounts, admin_dir, store, _ = make()
    root, _ = seed(admin_dir)
    device, credential = admin_dir.register_device(
        root, device_id="cart-1", name="心电图机 1", institution="town"
    )
    assert credential.startswith(DEVICE_PREFIX)
    verifier = DeviceCredentials(store, store)
    assert verifier.verify_device(credential) == device
    with pytest.raises(SessionInvalid):
        verifier.verify_device(DEVICE_PREFIX + "guess")
    with pytest.raises(SessionInvalid):
        verifier.verify_device("eyJhbGciOiJIUzI1NiJ9.e30.x")
    with pytest.raises(Conflict):
        admin_dir.register_device(root, device_id="cart-1", name="again", institution="town")
    admin_dir.revoke_device(root, "cart-1")
    with pytest.raises(TokenRevoked):
        verifier.verify_device(credential)
    assert store.actions()[-1] == "device.credential_refused"


def test_institution_admin_reaches_only_their_branch() -> None:
    """A county admin administers below the county; another county's records are not found."""
    _accounts, admin_dir, _, _ = make()
    root, doctor = seed(admin_dir)
    admin_dir.create_institution(
        root, code="other", name="另一县医院", level=Level.COUNTY, parent=None
    )
    county_admin = admin_dir.create_person(
        root,
        NewPerson(
            username="county.admin",
            display_name="王管理",
            password=PASSWORD,
            roles=frozenset({Role.ADMIN}),
            admin_scope=AdminScope.INSTITUTION,
            institution="county",
        ),
    )
    made = admin_dir.create_institution(
        county_admin, code="village", name="某村卫生室", level=Level.VILLAGE, parent="town"
    )
    assert made.parent == "town"
    with pytest.raises(NotFound):
        admin_dir.create_institution(
            county_admin, code="x", name="X", level=Level.TOWNSHIP, parent="other"
        )
    with pytest.raises(Forbidden):
        admin_dir.create_institution(
            county_admin, code="y", name="Y", level=Level.CITY, parent=None
        )
    with pytest.raises(InvalidInput):
        admin_dir.create_institution(root, code="z", name="Z", level=Level.CITY, parent="town")
    with pytest.raises(Forbidden):
        admin_dir.create_person(
            county_admin,
            NewPerson(
                username="boss",
                display_name="Boss",
                password=PASSWORD,
                roles=frozenset({Role.ADMIN}),
                admin_scope=AdminScope.DEPLOYMENT,
                institution="county",
            ),
        )
    other_admin = admin_dir.create_person(
        root,
        NewPerson(
            username="other.admin",
            display_name="Other Admin",
            password=PASSWORD,
            roles=frozenset({Role.ADMIN}),
            admin_scope=AdminScope.INSTITUTION,
            institution="other",
        ),
    )
    with pytest.raises(NotFound):
        admin_dir.get_person(other_admin, doctor.id)
    with pytest.raises(NotFound):
        admin_dir.get_institution(other_admin, "town")
    with pytest.raises(NotFound):
        admin_dir.unlock(other_admin, doctor.id)
    assert admin_dir.get_person(county_admin, doctor.id) == doctor
    listed = admin_dir.list_people(other_admin, PageRequest())
    assert [p.username for p in listed.items] == ["other.admin"]


def test_first_admin_only_once() -> None:
    """setup's first admin is refused once a deployment admin exists."""
    _, admin_dir, _, _ = make()
    admin_dir.create_first_admin(username="root", display_name="Root", password=PASSWORD)
    with pytest.raises(Conflict):
        admin_dir.create_first_admin(username="root2", display_name="Root", password=PASSWORD)


def test_unknown_user_costs_a_hash_like_a_wrong_password() -> None:
    """An unknown username verifies a dummy hash: with a costly hasher it takes about as
    long as a wrong password (a shortcut would be a hundred times faster)."""
    accounts, admin_dir, _, _ = make(
        argon2_time_cost=3, argon2_memory_kib=32768, account_burst=100, address_burst=100
    )
    seed(admin_dir)

    def duration_s(username: str) -> float:
        start = time.perf_counter()
        with pytest.raises(LoginFailed):
            accounts.login(username, "wrong password!")
        return time.perf_counter() - start

    unknown = sorted(duration_s("nobody") for _ in range(3))[1]
    wrong = sorted(duration_s("doc") for _ in range(3))[1]
    assert unknown > 0.3 * wrong


class Heard:
    """A Revocations listener that writes down what it is told."""

    def __init__(self) -> None:
        self.told: list[tuple[str, str]] = []

    def session_revoked(self, session_id: str) -> None:
        self.told.append(("session", session_id))

    def person_sessions_revoked(self, person_id: str) -> None:
        self.told.append(("person", person_id))

    def api_token_revoked(self, token_id: str) -> None:
        self.told.append(("api_token", token_id))

    def device_revoked(self, device_id: str) -> None:
        self.told.append(("device", device_id))


def test_every_revocation_is_told_to_the_listener() -> None:
    """Logout, token and device revocation, lockout and password change reach the
    listener (for the edge to close live connections), each after the store's write."""
    store = MemoryStore()
    heard = Heard()
    accounts = Accounts(
        directory=store,
        credentials=store,
        sessions=store,
        audit=store,
        policy=AccountPolicy(**FAST, lock_after_failures=2, account_burst=50),
        revocations=heard,
    )
    admin_dir = DirectoryAdmin(accounts)
    root, doctor = seed(admin_dir)
    session = accounts.login("doc", PASSWORD)
    accounts.logout(session.principal)
    assert session.principal.session is not None
    assert heard.told[-1] == ("session", session.principal.session.id)
    assert store.sessions[session.principal.session.id].revoked_at_s is not None
    again = accounts.login("doc", PASSWORD)
    minted = accounts.create_token(again.principal, "HIS")
    accounts.revoke_token(again.principal, minted.record.id)
    assert heard.told[-1] == ("api_token", minted.record.id)
    admin_dir.register_device(root, device_id="cart-1", name="Cart", institution="town")
    admin_dir.revoke_device(root, "cart-1")
    assert heard.told[-1] == ("device", "cart-1")
    accounts.change_password(again.principal, PASSWORD, "another good one")
    assert heard.told[-1] == ("person", doctor.id)
    heard.told.clear()
    for _ in range(2):
        with pytest.raises((LoginFailed, AccountLocked)):
            accounts.login("doc", "wrong password!")
    assert heard.told == [("person", doctor.id)]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"argon2_time_cost": 0}, "argon2_time_cost"),
        ({"argon2_parallelism": 0}, "argon2_parallelism"),
        ({"argon2_memory_kib": 31, "argon2_parallelism": 4}, "argon2_memory_kib"),
    ],
)
def test_argon2_costs_out_of_argon2s_bounds_are_refused_at_once(
    fields: dict[str, int], message: str
) -> None:
    """A configuration argon2 could not hash with fails when read, not at the first login."""
    with pytest.raises(ValueError, match=message):
        AccountPolicy(**fields)
    smallest = AccountPolicy(argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)
    assert smallest.hasher().verify(smallest.hasher().hash("a password"), "a password")
