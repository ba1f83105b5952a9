"""The join link as a QR code on the host's panel, so that a phone can join: symbols of
web/qr.js read back by a real decoder (zxing-cpp; versions 1 to 40, every level, UTF-8),
the host's panel showing this server's link without a token, and the link itself asking a
person who is not logged in to log in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.async_api import Browser, Page

from tests.e2e.conftest import Consult
from tests.web.browser import chromium, new_page

zxingcpp = pytest.importorskip("zxingcpp", reason="zxing-cpp (test extra) reads the QR codes")

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ENCODE = """async ([text, ecl]) => {
    const qr = (await import('/static/qr.js')).encode(text, {ecl});
    return {version: qr.version, mask: qr.mask, ecl: qr.ecl,
            rows: qr.modules.map((row) => row.map((d) => (d ? '1' : '0')).join(''))};
}"""
# The host's canvas as grey levels, exactly as painted.
CANVAS = """() => { const c = document.getElementById('invite-qr');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const grey = [];
    for (let i = 0; i < d.length; i += 4) grey.push(d[i]);
    return {width: c.width, height: c.height, grey}; }"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


def read(image: np.ndarray) -> Any:
    """The one QR Code zxing-cpp finds in ``image`` (grey levels)."""
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    assert len(found) == 1, found
    return found[0]


def image_of(rows: list[str], scale: int = 3, quiet: int = 4) -> np.ndarray:
    """A symbol's rows ('1' dark) as an image with a quiet zone, as a screen shows it."""
    modules = np.array([[0 if c == "1" else 255 for c in row] for row in rows], dtype=np.uint8)
    framed = np.pad(modules, quiet, constant_values=255)
    return framed.repeat(scale, axis=0).repeat(scale, axis=1)


async def encoded(page: Page, text: str, ecl: str) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(ENCODE, [text, ecl])
    return result


async def test_encoder_symbols_read_back(consult: Consult, browser: Browser) -> None:
    """Every level and a spread of versions (both count-field sizes, version information,
    up to 81 blocks): a decoder reads the text back with the version, level and mask."""
    page = await new_page(browser)
    await page.goto(f"{consult.server.url}/static/login.html")
    cases = [("HELLO", "M"), ("会诊 consult 二维码", "Q"), ("x" * 150, "H")]
    cases += [("a" * n, ecl) for n in (40, 120, 300, 700, 1200) for ecl in "LMQH"]
    cases += [("b" * 2300, "L"), ("c" * 2300, "M"), ("d" * 2900, "L")]
    cases += [("https://h.example:8443/join?room=consult&title=" + "%E4" * 40, "M")]
    versions = set()
    for text, ecl in cases:
        ours = await encoded(page, text, ecl)
        got = read(image_of(ours["rows"]))
        assert got.text == text, (len(text), ecl)
        assert got.extra["Version"] == str(ours["version"])
        assert got.extra["ECLevel"] == ecl
        assert got.extra["DataMask"] == ours["mask"]
        assert len(ours["rows"]) == 4 * ours["version"] + 17
        versions.add(ours["version"])
    assert min(versions) == 1
    assert max(versions) >= 38
    assert {v for v in versions if 7 <= v <= 9}  # version information, 8-bit count
    assert {v for v in versions if 10 <= v <= 26}  # 16-bit count


async def test_host_panel_shows_the_join_link_as_a_qr_code(
    consult: Consult, browser: Browser, tmp_path: Path
) -> None:
    """The host's panel shows this server's /join?room= link (no token in it) as a QR
    code that reads back from the canvas's pixels; the link asks a phone that is not
    logged in to log in; a participant who does not moderate has no such panel."""
    host = await new_page(browser, width=1366, height=768)
    await host.goto(consult.join_url("dr-host") + "&title=Cardiology%20consult")
    await host.click("#toggle-people")
    await host.locator("#invite-qr").wait_for(state="visible")
    link = f"{consult.server.url}/join?room=consult&title=Cardiology%20consult"
    assert await host.locator("#invite-link").inner_text() == link
    assert "token" not in link
    canvas = await host.evaluate(CANVAS)
    grey = np.array(canvas["grey"], dtype=np.uint8).reshape(canvas["height"], canvas["width"])
    assert read(grey).text == link
    box = await host.locator("#invite-qr").bounding_box()
    assert box is not None
    assert box["width"] >= 150  # big enough for a phone's camera at arm's length
    label = await host.get_attribute("#invite-qr", "aria-label")
    assert label == f"QR code of the join link {link}"
    await host.screenshot(path=tmp_path / "host-qr.png")

    phone = await new_page(browser, width=390, height=844)
    await phone.add_init_script(
        "window.gumCalls = 0; const g = navigator.mediaDevices.getUserMedia"
        ".bind(navigator.mediaDevices); navigator.mediaDevices.getUserMedia ="
        " (c) => { window.gumCalls += 1; return g(c); };"
    )
    await phone.goto(link + "&lang=en")
    await phone.wait_for_selector("#lobby-error:not([hidden])")
    assert await phone.locator("#lobby-error").inner_text() == "Log in to join this consult."
    href = await phone.get_attribute("#lobby-login", "href")
    assert (
        href
        == "/static/login.html?next="
        + "%2Fjoin%3Froom%3Dconsult%26title%3DCardiology%2520consult%26lang%3Den"
    )
    assert await phone.evaluate("() => window.gumCalls") == 0
    await phone.screenshot(path=tmp_path / "phone-login.png")

    guest = await new_page(browser)
    token = consult.token("dr-guest", moderator=False)
    await guest.goto(f"{consult.server.url}/join?token={token}&autojoin=1&lang=en&w=320&h=180")
    await host.locator("#waiting-list .admit").click()
    await guest.wait_for_function("() => window.tc.screen === 'room'")
    assert await guest.locator("#invite").is_hidden()
