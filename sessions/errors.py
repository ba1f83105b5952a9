"""The exceptions of ``sessions/``: one tree.

::

    SessionError
    ├── TokenError                 a token is refused (never say more to a client)
    │   ├── InvalidToken           bad signature, algorithm, audience, claims, role
    │   ├── TokenExpired           ``exp`` has passed
    │   └── TokenNotYetValid       ``nbf`` is in the future
    ├── TransitionError            no entry in the participant transition table
    ├── SecretError                the server secret cannot be read or created
    └── StoreError                 the Store cannot do what was asked
"""

from __future__ import annotations


class SessionError(Exception):
    """Base of every error raised by ``sessions/``."""


class TokenError(SessionError):
    """A token is refused."""


class InvalidToken(TokenError):
    """Bad signature, algorithm, audience, missing or malformed claims, unknown role."""


class TokenExpired(TokenError):
    """The token's ``exp`` has passed."""


class TokenNotYetValid(TokenError):
    """The token's ``nbf`` is in the future."""


class TransitionError(SessionError):
    """An event the participant transition table has no entry for.

    The message names the participant's role, its state and the event, like h11's
    ``LocalProtocolError``: a bug in the caller, or a client asking for something the
    state does not allow (the signaling layer checks before applying).
    """

    def __init__(self, role: str, state: str, event: str) -> None:
        super().__init__(f"{role} participant in state {state} cannot handle event {event}")
        self.role = role
        self.state = state
        self.event = event


class SecretError(SessionError):
    """The server secret cannot be read or created."""


class StoreError(SessionError):
    """The Store cannot do what was asked."""
