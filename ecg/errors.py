"""The one exception tree of ``ecg/``.

::

    EcgError                      anything ecg/ raises on purpose
    ├── RecordError               a record cannot be read: names the file and the reason
    ├── ConfigError(ValueError)   a configuration value is out of range or inconsistent
    ├── SignalError(ValueError)   an array handed to a processing function has the wrong
    │                             shape, sampling rate or dtype
    ├── OutputError               an annotation file cannot be written or read back
    └── DeviceError               the device stream protocol and its store (ecg.device)
        ├── ProtocolError         the peer broke the protocol or a request was refused;
        │   │                     carries an ErrorCode and a reason safe to send
        │   ├── FrameError        a binary frame cannot be decoded
        │   ├── MessageError      a text message is not JSON or breaks its schema
        │   └── StreamRefused     a well-formed message refused in its stream's state
        ├── LocalProtocolError    our own side asked for what the protocol forbids
        └── StoreError            the stream store cannot do what was asked

``DeviceError`` and its subclasses live in :mod:`ecg.device`, beside the protocol they
describe; they are drawn here so that the whole tree is in one place.

Processing functions never raise bare ``Exception``; callers that handle many records
(``teleconsult ecg annotate``) catch :class:`EcgError` per record, report it, and carry
on with the others. ``ConfigError`` and ``SignalError`` also derive from ``ValueError``
so that code which only knows the standard library still catches them.
"""

from __future__ import annotations

__all__ = ["ConfigError", "EcgError", "OutputError", "RecordError", "SignalError"]


class EcgError(Exception):
    """Base class of every error ``ecg/`` raises on purpose."""


class RecordError(EcgError):
    """A record cannot be read.

    Parameters
    ----------
    path : str
        The record path (as ``wfdb`` takes it, without extension) or the file at fault.
    reason : str
        What is wrong, in words a user can act on.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ConfigError(EcgError, ValueError):
    """A configuration value is out of range or inconsistent with another one."""


class SignalError(EcgError, ValueError):
    """An input array has the wrong shape, dtype or sampling rate."""


class OutputError(EcgError):
    """An annotation file cannot be written, or a file read back is not one of ours."""
