"""media/ satisfies signaling's Protocols structurally (without importing signaling)."""

from __future__ import annotations

import inspect

import pytest

from media.sfu import MediaListener, Sfu
from signaling import ports


def _methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if inspect.isfunction(member) and not name.startswith("_")
    }


@pytest.mark.parametrize(
    ("ours", "theirs"), [(Sfu, ports.MediaBackend), (MediaListener, ports.MediaListener)]
)
def test_same_methods_and_signatures(ours: type, theirs: type) -> None:
    """Every method signaling declares is here with the same parameters, types, async-ness."""
    # set_recording and stats are plain calls from the pump's effect loop; the rest awaited.
    wanted = _methods(theirs)
    have = _methods(ours)
    for name, signature in wanted.items():
        assert name in have, name
        assert str(have[name]) == str(signature), name
        declared = inspect.iscoroutinefunction(getattr(theirs, name))
        assert inspect.iscoroutinefunction(getattr(ours, name)) == declared, name


def test_sfu_has_the_attributes_signaling_sets() -> None:
    """The attributes the MediaBackend Protocol declares exist on a real Sfu."""
    sfu = Sfu()
    for name in ports.MediaBackend.__annotations__:
        assert hasattr(sfu, name), name
