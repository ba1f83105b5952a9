"""A shaped UDP link in user space, in front of a TURN server: delay, random loss, rate.

What ``tc netem`` would do on a network namespace's veth (``delay 150ms loss 5% rate
256kbit``), for the kernels that have no qdiscs (this machine's has none: ``tc qdisc add
... netem`` answers "Specified qdisc kind is unknown"). A client that may only use relay
candidates (``iceTransportPolicy: "relay"``) is given this shaper as its TURN server, so
all its media crosses the shaped link, both ways, as through a poor access line (ADSL,
4G); everything else on the machine is untouched.

Model (netem's): each direction is one :class:`Link` shared by every client behind it.
A datagram is lost with probability ``loss`` (seeded, so that a run can be repeated);
otherwise it waits for the line (``rate_bps``: serialisation one datagram after the
other, a tail drop past ``queue_bytes``) and then ``delay_s`` of propagation. Setting
``shaped = False`` restores the line at once (the link "recovers").

Everything listens on 127.0.0.1 and is closed by :meth:`Shaper.close`.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

Address = tuple[str, int]


@dataclass
class LinkStats:
    """What one direction did with the datagrams given to it."""

    sent: int = 0  # datagrams handed to the link
    lost: int = 0  # dropped at random (the loss rate)
    dropped: int = 0  # tail-dropped (the queue was full)
    delivered: int = 0
    delivered_bytes: int = 0


@dataclass
class Link:
    """One direction of the shaped line: ``when(size, now_s)`` says when a datagram of
    ``size`` bytes arrives, or None if it is lost (no I/O here)."""

    delay_s: float
    loss: float
    rate_bps: float
    queue_bytes: int
    seed: int
    shaped: bool = True
    stats: LinkStats = field(default_factory=LinkStats)
    _busy_until_s: float = 0.0
    _random: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def when(self, size: int, now_s: float) -> float | None:
        self.stats.sent += 1
        if not self.shaped:
            return now_s
        if self._random.random() < self.loss:
            self.stats.lost += 1
            return None
        start_s = max(now_s, self._busy_until_s)
        if (start_s - now_s) * self.rate_bps / 8 > self.queue_bytes:
            self.stats.dropped += 1
            return None
        self._busy_until_s = start_s + size * 8 / self.rate_bps
        return self._busy_until_s + self.delay_s


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Any) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.on_datagram(data, addr)


class Shaper:
    """A UDP relay ``127.0.0.1:port`` -> ``upstream`` over two shaped :class:`Link` s."""

    def __init__(self, upstream: Address, *, up: Link, down: Link) -> None:
        self.upstream = upstream
        self.up = up  # client -> upstream
        self.down = down  # upstream -> client
        self.port = 0
        self._front: _Endpoint | None = None
        self._backs: dict[Address, _Endpoint] = {}  # client address -> its upstream socket
        self._loop = asyncio.get_running_loop()

    @property
    def shaped(self) -> bool:
        return self.up.shaped and self.down.shaped

    @shaped.setter
    def shaped(self, on: bool) -> None:
        self.up.shaped = self.down.shaped = on

    async def start(self) -> None:
        _, front = await self._loop.create_datagram_endpoint(
            lambda: _Endpoint(self._from_client), local_addr=("127.0.0.1", 0)
        )
        self._front = front
        assert front.transport is not None
        self.port = front.transport.get_extra_info("sockname")[1]

    def _from_client(self, data: bytes, client: Address) -> None:
        back = self._backs.get(client)
        if back is None:
            self._loop.create_task(self._open_back(client, data))
            return
        self._carry(self.up, data, lambda: back.transport and back.transport.sendto(data))

    async def _open_back(self, client: Address, first: bytes) -> None:
        if client in self._backs:
            self._from_client(first, client)
            return
        _, back = await self._loop.create_datagram_endpoint(
            lambda: _Endpoint(lambda data, _addr: self._from_upstream(client, data)),
            remote_addr=self.upstream,
        )
        self._backs[client] = back
        self._from_client(first, client)

    def _from_upstream(self, client: Address, data: bytes) -> None:
        front = self._front
        if front is not None and front.transport is not None:
            transport = front.transport
            self._carry(self.down, data, lambda: transport.sendto(data, client))

    def _carry(self, link: Link, data: bytes, deliver: Any) -> None:
        arrival_s = link.when(len(data), self._loop.time())
        if arrival_s is None:
            return

        def arrive() -> None:
            link.stats.delivered += 1
            link.stats.delivered_bytes += len(data)
            deliver()

        if arrival_s <= self._loop.time():
            arrive()
        else:
            self._loop.call_at(arrival_s, arrive)

    def close(self) -> None:
        for back in self._backs.values():
            if back.transport is not None:
                back.transport.close()
        if self._front is not None and self._front.transport is not None:
            self._front.transport.close()
