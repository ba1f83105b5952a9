"""The exceptions of ``signaling/``: one tree.

::

    SignalingError
    ├── ClientError        the peer broke the protocol or asked for what it may not do;
    │                      carries the error code, a reason safe to show, and the close
    │                      code when continuing makes no sense
    ├── ServerError        the server cannot start or run (configuration, port in use)
    └── ConnectionStateError
                           no entry in the connection transition table
                           (:mod:`signaling.connections`): a bug in the core

Internal errors (bugs) are never sent to a client as they are: the core logs them and
sends the generic code ``internal`` ("Don't include exception details, which may be
security-sensitive", as websockets says).
"""

from __future__ import annotations

from signaling.messages import CloseCode, ErrorCode


class SignalingError(Exception):
    """Base of every error raised by ``signaling/``."""


class ClientError(SignalingError):
    """The peer did something wrong; becomes an ``error`` message (and maybe a close)."""

    def __init__(self, code: ErrorCode, reason: str, close: CloseCode | None = None) -> None:
        super().__init__(f"{code.value}: {reason}")
        self.code = code
        self.reason = reason
        self.close = close


class ServerError(SignalingError):
    """The server cannot start or run."""


class ConnectionStateError(SignalingError):
    """An event the connection transition table has no entry for.

    The message names the connection's role, its state and the event, like h11's
    ``LocalProtocolError``: the core asked for a change its own table forbids.
    """

    def __init__(self, role: str, state: str, event: str) -> None:
        super().__init__(f"{role} connection in state {state} cannot handle event {event}")
        self.role = role
        self.state = state
        self.event = event
