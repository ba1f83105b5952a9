"""The platform's wiring: one call opens the store and everything accounts need on it."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest

from consults.directory import Level
from consults.errors import LoginFailed, TokenRevoked
from consults.lifecycle import Priority
from teleconsult.config import load_config
from teleconsult.platform import FIELD_KEY_FILE, PlatformError, load_field_key, open_platform


def test_field_key_is_made_once_privately_and_kept(tmp_path: Path) -> None:
    """The first call makes a 32-byte 0600 key in a 0700 folder; later calls read it back."""
    key = load_field_key(tmp_path)
    path = tmp_path / FIELD_KEY_FILE
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_field_key(tmp_path) == key


def test_a_field_key_others_can_read_is_refused(tmp_path: Path) -> None:
    """A key file with group or other bits is refused with what to do."""
    load_field_key(tmp_path)
    (tmp_path / FIELD_KEY_FILE).chmod(0o644)
    with pytest.raises(PlatformError, match="chmod 600"):
        load_field_key(tmp_path)


def test_first_admin_logs_in_and_registers_a_cart(tmp_path: Path) -> None:
    """Over the real SQLite store: the first admin logs in, builds a county hospital, registers
    a cart whose credential verifies until revoked; a wrong password is refused."""
    platform = open_platform(data_dir=tmp_path)
    try:
        admin = platform.directory.create_first_admin(
            username="admin", display_name="管理员", password="correct horse battery"
        )
        login = platform.accounts.login("admin", "correct horse battery")
        assert login.principal.person.id == admin.id
        with pytest.raises(LoginFailed):
            platform.accounts.login("admin", "wrong horse battery")
        platform.directory.create_institution(
            admin, code="CH01", name="县人民医院", level=Level.COUNTY, parent=None
        )
        device, credential = platform.directory.register_device(
            admin, device_id="cart-1", name="ECG cart 1", institution="CH01"
        )
        assert platform.devices.verify_device(credential).institution == "CH01"
        platform.directory.revoke_device(admin, device.id)
        with pytest.raises(TokenRevoked):
            platform.devices.verify_device(credential)
        assert {"accounts", "directory", "principal"} <= set(platform.api.dependencies)
    finally:
        platform.close()
    reopened = open_platform(data_dir=tmp_path)
    try:
        assert reopened.accounts.login("admin", "correct horse battery").principal.person.id
    finally:
        reopened.close()


def test_directory_snapshot_follows_the_store_on_refresh(tmp_path: Path) -> None:
    """The snapshot answers from memory; an institution added shows after a refresh."""
    platform = open_platform(data_dir=tmp_path)
    try:
        admin = platform.directory.create_first_admin(
            username="admin", display_name="Admin", password="correct horse battery"
        )
        view = platform.directory_view
        assert "CH01" not in view.tree()
        platform.directory.create_institution(
            admin, code="CH01", name="县人民医院", level=Level.COUNTY, parent=None
        )
        assert "CH01" not in view.tree()
        view.refresh()
        assert "CH01" in view.tree()
        assert list(view.relations()) == []
    finally:
        platform.close()


def test_the_configuration_sections_reach_the_services(tmp_path: Path) -> None:
    """``[consults]`` and ``[readings]`` reach the services the server builds."""
    config = load_config(
        None,
        environ={
            "TELECONSULT_CONSULTS__ACCEPT_WITHIN_S": "{routine = 60, urgent = 60, emergency = 30}",
            "TELECONSULT_READINGS__ACKNOWLEDGE_WITHIN_S": "120",
        },
    )
    platform = open_platform(
        data_dir=tmp_path,
        consult_settings=config.consults,
        reading_settings=config.readings,
        upload_limits=config.uploads,
    )
    try:
        assert platform.consult_service.policy.accept_within_s[Priority.EMERGENCY] == 30
        assert platform.reading_service.acknowledge_within == timedelta(seconds=120)
    finally:
        platform.close()
