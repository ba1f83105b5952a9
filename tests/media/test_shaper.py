"""tests.media.shaper: the user-space shaped link (delay, loss, rate) the room's
poor-network test puts in front of TURN."""

from __future__ import annotations

import asyncio
import itertools
import time

from tests.media.shaper import Link, Shaper


def link(**overrides: float) -> Link:
    settings: dict[str, float] = {
        "delay_s": 0.15,
        "loss": 0.05,
        "rate_bps": 256_000,
        "queue_bytes": 16_000,
    }
    settings.update(overrides)
    return Link(**settings, seed=1)  # type: ignore[arg-type]


def test_loss_is_the_configured_fraction() -> None:
    """Over 20 000 datagrams, 5 % +- 0.5 % are lost; none when unshaped."""
    line = link(rate_bps=1e12)
    arrivals = [line.when(100, now_s=i * 0.01) for i in range(20_000)]
    lost = sum(a is None for a in arrivals)
    assert 900 <= lost <= 1100, lost
    line.shaped = False
    assert line.when(100, now_s=500.0) == 500.0


def test_rate_serialises_and_the_queue_tail_drops() -> None:
    """1000-byte datagrams at 256 kbit/s leave 31.25 ms apart after 150 ms of delay; a
    burst beyond 16 kB of queue is dropped."""
    line = link(loss=0.0)
    times = [line.when(1000, now_s=0.0) for _ in range(40)]
    delivered = [t for t in times if t is not None]
    assert delivered[0] == 0.15 + 1000 * 8 / 256_000
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(delivered)}
    assert gaps == {0.03125}
    assert line.stats.dropped == 40 - len(delivered) > 0
    assert len(delivered) == 17  # 16 kB queued + the one on the line


async def test_a_datagram_crosses_the_shaper_both_ways_with_the_delay() -> None:
    """Through a real UDP relay to an echo server: the round trip takes 2 x 150 ms."""
    loop = asyncio.get_running_loop()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.transport.sendto(data, addr)  # type: ignore[attr-defined]

    echo, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    shaper = Shaper(echo.get_extra_info("sockname"), up=link(loss=0.0), down=link(loss=0.0))
    await shaper.start()
    answered: asyncio.Future[float] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if not answered.done():
                answered.set_result(time.monotonic())

    client, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", shaper.port))
    sent = time.monotonic()
    client.sendto(b"ping")
    rtt_s = await asyncio.wait_for(answered, 5) - sent
    assert 0.3 <= rtt_s < 0.5, rtt_s
    client.close()
    echo.close()
    shaper.close()
