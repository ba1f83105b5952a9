"""The lean parts of the edge's WebSocket protocol (api.edge_protocol) behave as the
asyncio objects they replace, for the way uvicorn uses them."""

from __future__ import annotations

import asyncio

from api.edge_protocol import _Flag, _Inbox


async def test_inbox_keeps_order_and_wakes_its_consumer() -> None:
    inbox: _Inbox[int] = _Inbox()
    assert inbox.empty()
    loop = asyncio.get_running_loop()
    # Put once get() is already waiting: the loop runs these after get() suspends.
    loop.call_soon(inbox.put_nowait, 1)
    loop.call_soon(inbox.put_nowait, 2)
    assert await inbox.get() == 1
    assert not inbox.empty()
    assert await inbox.get() == 2
    assert inbox.empty()


async def test_inbox_get_cancelled_loses_nothing() -> None:
    inbox: _Inbox[str] = _Inbox()
    getting = asyncio.ensure_future(inbox.get())
    asyncio.get_running_loop().call_soon(getting.cancel)
    await asyncio.gather(getting, return_exceptions=True)
    assert getting.cancelled()
    inbox.put_nowait("after")
    assert await inbox.get() == "after"


async def test_flag_waits_while_clear_and_wakes_every_waiter() -> None:
    flag = _Flag(is_set=True)
    assert await flag.wait()
    flag.clear()
    assert not flag.is_set()
    waiters = [asyncio.ensure_future(flag.wait()) for _ in range(3)]
    asyncio.get_running_loop().call_soon(flag.set)
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert flag.is_set()


async def test_flag_cancelled_waiter_is_forgotten() -> None:
    flag = _Flag(is_set=False)
    waiter = asyncio.ensure_future(flag.wait())
    asyncio.get_running_loop().call_soon(waiter.cancel)
    await asyncio.gather(waiter, return_exceptions=True)
    assert waiter.cancelled()
    flag.set()  # must not touch the cancelled future
    assert await flag.wait()
