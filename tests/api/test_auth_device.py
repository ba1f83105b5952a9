"""The /device credential check of a registered cart over the SQL store: its claims, a
revoked or unknown credential refused (and audited), a device JWT still accepted."""

from __future__ import annotations

import functools

import pytest

from api.session import device_token_verifier
from consults.accounts import DeviceCredentials
from consults.directory import Level
from sessions.errors import InvalidToken
from sessions.tokens import mint_token, verify_token
from tests.api.test_auth_fixtures import Stack, backend, policy, stack

__all__ = ["backend", "policy", "stack"]  # fixtures

SECRET = "device-test-secret-" + "x" * 32


async def test_cart_credential_gives_device_claims_until_revoked(stack: Stack) -> None:
    """A registered cart's credential verifies as role device with its id and
    institution; after revocation it is refused with InvalidToken; a JWT still works."""
    root = stack.stores.directory.person_by_username("root")
    assert root is not None
    stack.directory.create_institution(
        root, code="town-1", name="某镇卫生院", level=Level.TOWNSHIP, parent=None
    )
    device, credential = stack.directory.register_device(
        root, device_id="cart-1", name="心电图机 1", institution="town-1"
    )
    verify = device_token_verifier(
        DeviceCredentials(stack.stores.directory, stack.stores.audit),
        functools.partial(verify_token, SECRET),
        clock=lambda: 1_800_000_000.0,
    )
    claims = verify(credential)
    assert (claims.identity, claims.role, claims.room) == ("cart-1", "device", "town-1")
    assert claims.institution == "town-1"
    assert claims.expires_at_s > 1_800_000_000.0
    with pytest.raises(InvalidToken):
        verify("tcd_" + "A" * 43)
    jwt = mint_token(
        SECRET,
        identity="legacy-cart",
        name="Legacy",
        role="device",
        room="r1",
        permissions=frozenset({"publish"}),
    )
    assert verify(jwt).identity == "legacy-cart"
    stack.directory.revoke_device(root, device.id)
    with pytest.raises(InvalidToken, match="revoked"):
        verify(credential)
    assert stack.audited().count("device.credential_refused") == 2
