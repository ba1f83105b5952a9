"""Notifications: messages another layer pushes to a person's ``/ws`` connections.

The consult service (and later the ECG centre) tells a person that something happened
— a consult assigned, an opinion signed, a critical value to acknowledge — while that
person is connected. It calls ``Core.notify(identity, topic, data)``; the core sends
one ``notify`` message to every authenticated connection of that identity, in every
room, room connections and viewer connections alike (a person in a waiting room is
notified too: a notification is addressed to the person, not to the room).

Design notes:

- Minimal on purpose: no subscription, no history, no acknowledgement. A notification
  reaches the connections open now or nobody; what must not be missed is kept by the
  layer that sends it (a worklist, a consult's state) and shown from there, and the
  returned effects tell the caller whether anyone was connected.
- The caller is our own code, so a bad topic or an oversized ``data`` is a bug:
  ``ValueError`` before anything is queued, never an ``error`` to a client.
- ``topic``: 1–64 characters, dotted lower-case words (``consult.assigned``).
  ``data``: a flat object of strings, numbers, booleans and nulls whose keys the topic
  defines, at most :data:`MAX_NOTIFY_BYTES` encoded with the envelope.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from signaling import messages as m
from signaling.context import Context

MAX_NOTIFY_BYTES: Final = 4096
_TOPIC: Final = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
MAX_TOPIC_CHARS: Final = 64


def notification(topic: str, data: Mapping[str, m.NotifyValue], time: str) -> m.Notify:
    """The ``notify`` message, checked.

    Raises
    ------
    ValueError
        For a malformed topic, a value that is not a JSON scalar, or a message over
        :data:`MAX_NOTIFY_BYTES`.
    """
    if len(topic) > MAX_TOPIC_CHARS or not _TOPIC.fullmatch(topic):
        raise ValueError(f"topic must be dotted lower-case words of at most {MAX_TOPIC_CHARS}")
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str | int | float | bool | None):
            raise ValueError(f"data[{key!r}] must be a string, number, boolean or null")
    message = m.Notify(topic=topic, data=dict(data), time=time)
    size_bytes = len(m.encode(message))
    if size_bytes > MAX_NOTIFY_BYTES:
        raise ValueError(f"notification of {size_bytes} bytes, over {MAX_NOTIFY_BYTES}")
    return message


class Notifications:
    """The notify channel."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def notify(self, identity: str, topic: str, data: Mapping[str, m.NotifyValue]) -> int:
        """Send ``notify`` to every authenticated connection of ``identity``; how many."""
        message = notification(topic, data, self.ctx.now_iso())
        sent = 0
        for c in self.ctx.connections_of(identity):
            self.ctx.send(c, message)
            sent += 1
        if sent:
            self.ctx.stats.notified[topic] += sent
        return sent
