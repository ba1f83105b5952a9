"""Chat in a room: a participant's text, stamped by the server, to everyone joined.

Chat is part of the consult's record, not of the audit trail: each line is written to
the store's chat lines (``sessions.store.ChatLine``), which the consult page shows as
the consult's chat history.

Because every line is stored, chat has a budget of its own beside the connection's
message rate: characters per person per room (``chat_chars_per_s`` refilled,
``chat_burst_chars`` at once), kept across reconnects. A line over it is refused with
``rate_limited`` and neither sent nor stored; the connection stays. At the message rate
alone (20/s of 2,000 characters) one person could store 40 kB/s.
"""

from __future__ import annotations

from sessions.rooms import Participant
from sessions.store import ChatLine
from signaling import messages as m
from signaling.connections import TokenBucket
from signaling.context import Context
from signaling.errors import ClientError
from signaling.messages import ErrorCode

# Buckets are dropped once full again (idle) when there are more than this many.
_PRUNE_ABOVE = 1024


class Chat:
    """The chat concern."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._budgets: dict[tuple[str, str], TokenBucket] = {}  # (room, identity)

    def say(self, p: Participant, text: str, now_s: float) -> None:
        """``p`` (admitted) says ``text``: everyone with a media session gets it, ``p`` too.

        Raises
        ------
        ClientError
            ``rate_limited`` when the line is over ``p``'s chat budget.
        """
        if not self._budget(p.room_id, p.identity, now_s).take(now_s, len(text)):
            raise ClientError(ErrorCode.RATE_LIMITED, "too much chat text at once: wait a moment")
        event = m.ChatEvent(
            participant_id=p.participant_id,
            identity=p.identity,
            name=p.name,
            text=text,
            time=self.ctx.now_iso(),
        )
        self.ctx.broadcast(p, event)
        self.ctx.keep(
            ChatLine(time=event.time, room=p.room_id, identity=p.identity, name=p.name, text=text)
        )

    def _budget(self, room_id: str, identity: str, now_s: float) -> TokenBucket:
        key = (room_id, identity)
        bucket = self._budgets.get(key)
        if bucket is None:
            if len(self._budgets) > _PRUNE_ABOVE:
                self._budgets = {k: b for k, b in self._budgets.items() if b.level(now_s) < b.burst}
            config = self.ctx.config
            burst = float(config.chat_burst_chars)
            bucket = TokenBucket(config.chat_chars_per_s, burst, burst, now_s)
            self._budgets[key] = bucket
        return bucket
