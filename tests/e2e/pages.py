"""What a test asks of a client page (through the DOM and ``window.tc``)."""

from __future__ import annotations

from playwright.async_api import Page

VIDEO_OF = 'document.querySelector(`video[data-identity="${identity}"]`)'


async def video_state(page: Page, identity: str) -> dict[str, float] | None:
    """``videoWidth`` and ``currentTime`` of the video of ``identity``, or None."""
    state: dict[str, float] | None = await page.evaluate(
        f"""(identity) => {{
            const v = {VIDEO_OF};
            return v ? {{width: v.videoWidth, time: v.currentTime}} : null;
        }}""",
        identity,
    )
    return state


async def assert_sees_and_hears(page: Page, identity: str, timeout_s: float = 20.0) -> None:
    """``page`` renders ``identity``'s video (time advancing) and receives audio."""
    await page.wait_for_function(
        f"(identity) => {{ const v = {VIDEO_OF}; return v && v.videoWidth > 0; }}",
        arg=identity,
        timeout=timeout_s * 1000,
    )
    before = await video_state(page, identity)
    assert before is not None
    # Playing: its time moves on from where it was (waited on, not slept for).
    await page.wait_for_function(
        f"([identity, time]) => {{ const v = {VIDEO_OF}; return v && v.currentTime > time; }}",
        arg=[identity, before["time"]],
        timeout=timeout_s * 1000,
    )
    # A waitForFunction predicate must be synchronous (an async one is a Promise, truthy
    # at once): the page keeps a snapshot of its inbound stats in window.tc.inbound.
    await page.wait_for_function(
        "() => window.tc.inbound && window.tc.inbound.audio.packets > 0",
        timeout=timeout_s * 1000,
    )


async def video_identities(page: Page) -> set[str]:
    """The identities that have a remote video element on ``page``."""
    identities: list[str] = await page.evaluate(
        "() => [...document.querySelectorAll('video[data-identity]')]"
        ".map((v) => v.dataset.identity)"
    )
    return set(identities)


async def screen(page: Page) -> str:
    """Which screen the client shows: lobby, waiting, room or ended."""
    name: str = await page.evaluate("() => window.tc.screen")
    return name
