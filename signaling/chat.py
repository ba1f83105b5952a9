"""Chat in a room: a participant's text, stamped by the server, to everyone joined.

Chat is part of the consult record: each message is also an audit entry (the consult
service will move it to the consult's own record; the wire message stays).
"""

from __future__ import annotations

from sessions.rooms import Participant
from signaling import messages as m
from signaling.context import Context


class Chat:
    """The chat concern."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def say(self, p: Participant, text: str) -> None:
        """``p`` (admitted) says ``text``: everyone with a media session gets it, ``p`` too."""
        event = m.ChatEvent(
            participant_id=p.participant_id,
            identity=p.identity,
            name=p.name,
            text=text,
            time=self.ctx.now_iso(),
        )
        self.ctx.broadcast(p, event)
        self.ctx.audit(p.room_id, p.identity, "chat", detail={"text": text})
