"""Fixtures of the media tests: a real coturn on loopback."""

from tests.media.turn import coturn

__all__ = ["coturn"]
