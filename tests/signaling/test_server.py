"""The server over real loopback WebSockets (uvicorn), with the fake media backend."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from api.edge import EdgeServer
from tests.signaling.conftest import Client, FakeMedia, make_token, open_client, ws_url


async def join(server: EdgeServer, identity: str, **kw: Any) -> tuple[Client, dict[str, Any]]:
    """Connect and join; returns the client and its first reply."""
    client = await open_client(server)
    await client.send(type="join", token=make_token(identity, **kw))
    return client, await client.recv()


async def read_until_closed(client: Client) -> list[dict[str, Any]]:
    """Every message until the server closes the connection."""
    messages = []
    try:
        while True:
            messages.append(await client.recv())
    except ConnectionClosed:
        return messages


async def closed_with(client: Client) -> tuple[int | None, str]:
    """Wait for the server to close ``client``; the close code and reason."""
    await read_until_closed(client)
    assert client.ws.close_code is not None
    return client.ws.close_code, client.ws.close_reason or ""


async def room(server: EdgeServer) -> tuple[Client, Client, str, str]:
    """A moderator and an admitted applicant: (moderator, applicant, their ids)."""
    mod, joined = await join(server, "dr-li", moderator=True)
    assert joined["type"] == "joined"
    app, waiting = await join(server, "dr-wang")
    assert waiting["type"] == "waiting"
    await mod.expect("participant_waiting")
    await mod.send(type="admit", participant_id=waiting["participant_id"])
    await app.expect("joined")
    await mod.expect("participant_joined")
    return mod, app, joined["participant_id"], waiting["participant_id"]


async def test_join_admit_media_and_chat(server: EdgeServer) -> None:
    """Moderator and applicant meet: admitted, subscribe offer, publish answer, track, chat."""
    mod, app, _, app_pid = await room(server)
    offer = await app.expect("offer")
    assert (offer["pc"], offer["sdp"]) == ("subscribe", "v=0 subscribe offer")
    await app.send(type="answer", pc="subscribe", sdp="v=0 client answer")
    await app.send(type="publish", track_id=f"t-{app_pid}", kind="video", source="screen")
    await app.send(type="offer", pc="publish", sdp="v=0 client offer", ref="o1")
    answer = await app.expect("answer")
    assert (answer["sdp"], answer["ref"]) == ("v=0 answer", "o1")
    published = await mod.expect("track_published")
    assert published["participant_id"] == app_pid
    assert published["track"]["source"] == "screen"
    await app.send(type="chat", text="ECG attached")
    for client in (mod, app):
        chat = await client.expect("chat")
        assert (chat["participant_id"], chat["text"]) == (app_pid, "ECG attached")
        assert chat["time"].endswith("Z")
    media = server.media
    assert isinstance(media, FakeMedia)
    assert ("answer", app_pid) in media.calls


async def test_mute_remove_and_banned_rejoin(server: EdgeServer) -> None:
    """Moderator mute pauses media and is announced; removal closes 4403; rejoin is banned."""
    mod, app, _, app_pid = await room(server)
    await mod.send(type="mute", kind="audio", participant_id=app_pid)
    muted = await app.expect("muted")
    assert (muted["participant_id"], muted["kind"], muted["muted"]) == (app_pid, "audio", True)
    await mod.send(type="remove", participant_id=app_pid, reason="test")
    assert (await app.expect("error"))["code"] == "removed"
    assert (await closed_with(app))[0] == 4403
    left = await mod.expect("participant_left")
    assert (left["participant_id"], left["reason"]) == (app_pid, "removed")
    media = server.media
    assert isinstance(media, FakeMedia)
    assert ("paused-audio-True", app_pid) in media.calls
    assert ("leave", app_pid) in media.calls


async def test_removed_token_cannot_rejoin(server: EdgeServer) -> None:
    """The very token of a removed participant is refused with banned, even when reused."""
    mod, _ = await join(server, "dr-li", moderator=True)
    token = make_token("dr-zhao")
    app = await open_client(server)
    await app.send(type="join", token=token)
    pid = (await app.recv())["participant_id"]
    await mod.send(type="remove", participant_id=pid)
    await closed_with(app)
    again = await open_client(server)
    await again.send(type="join", token=token)
    assert (await again.recv())["code"] == "banned"
    assert (await closed_with(again))[0] == 4403
    # Durable already: a removal is announced (the close above) only once its ban is
    # written (SignalingServer._persist acks the core after the batch).
    assert server.store.is_banned(json.loads(_payload(token))["jti"])


def _payload(token: str) -> str:
    import base64

    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


async def test_leave_closes_1000(server: EdgeServer) -> None:
    """Leave: the leaver is closed normally and the others are told."""
    mod, app, _, app_pid = await room(server)
    await app.send(type="leave")
    assert (await closed_with(app))[0] == 1000
    left = await mod.expect("participant_left")
    assert (left["participant_id"], left["reason"]) == (app_pid, "left")


async def test_resume_within_grace(server: EdgeServer) -> None:
    """A dropped connection resumes with the same participant id; media is renegotiated."""
    mod, app, _, app_pid = await room(server)
    await app.ws.close()
    assert (await mod.expect("participant_state"))["state"] == "disconnected"
    back, joined = await join(server, "dr-wang")
    assert joined["type"] == "joined"
    assert (joined["participant_id"], joined["resumed"]) == (app_pid, True)
    assert (await mod.expect("participant_state"))["state"] == "joined"
    assert (await back.expect("offer"))["pc"] == "subscribe"
    media = server.media
    assert isinstance(media, FakeMedia)
    assert media.calls.count(("join", app_pid)) == 2


async def test_removed_after_grace(server: EdgeServer) -> None:
    """A dropped participant that does not come back is gone after the grace period."""
    mod, app, _, app_pid = await room(server)
    await app.ws.close()
    await mod.expect("participant_state")
    started = time.monotonic()
    left = await mod.expect("participant_left", timeout_s=5)
    assert (left["participant_id"], left["reason"]) == (app_pid, "timeout")
    assert 0.5 <= time.monotonic() - started < 3.0


async def test_second_connection_replaces_first(server: EdgeServer) -> None:
    """The newer connection for an identity wins; the older is closed 4409."""
    mod, app, _, app_pid = await room(server)
    newer, joined = await join(server, "dr-wang")
    assert joined["participant_id"] == app_pid
    assert (await app.expect("error"))["code"] == "replaced"
    assert (await closed_with(app))[0] == 4409
    await newer.send(type="chat", text="from the new tab")
    assert (await mod.expect("chat"))["text"] == "from the new tab"


async def test_bad_sdp_and_unknown_transceiver(server: EdgeServer) -> None:
    """Invalid SDP and a candidate for an unknown mid get their codes; the connection stays."""
    _, app, _, _ = await room(server)
    await app.send(type="offer", pc="publish", sdp="garbage", ref="bad")
    error = await app.expect("error")
    assert (error["code"], error["ref"]) == ("invalid_sdp", "bad")
    assert "not SDP" not in error["reason"]
    await app.send(type="candidate", pc="publish", candidate="candidate:1", sdp_mid="9", ref="c")
    assert (await app.expect("error"))["code"] == "unknown_transceiver"
    await app.send(type="ping", ref="still")
    assert (await app.expect("pong"))["ref"] == "still"


async def test_bad_input_paths_leave_others_untouched(server: EdgeServer) -> None:
    """Malformed JSON, unknown type, oversize message and too-large frame: errors, others fine."""
    mod, app, _, _ = await room(server)
    await app.send(type="dance")
    assert (await app.expect("error"))["code"] == "unknown_type"
    await app.ws.send("{oops")
    assert (await app.expect("error"))["code"] == "bad_json"
    await app.ws.send(json.dumps({"type": "chat", "text": "x" * 70_000}))
    assert (await app.expect("error"))["code"] == "too_large"
    await app.ws.send("y" * 200_000)
    assert [m["code"] for m in await read_until_closed(app)] == ["too_large"]
    assert app.ws.close_code == 1009
    await mod.send(type="ping")
    assert (await mod.expect("pong"))["type"] == "pong"


async def test_messages_before_join_and_garbage(server: EdgeServer) -> None:
    """A valid message before join: not_joined; garbage before join: bad_json and close 4400."""
    client = await open_client(server)
    await client.send(type="chat", text="hello")
    assert (await client.recv())["code"] == "not_joined"
    await client.ws.send("not json")
    assert (await client.recv())["code"] == "bad_json"
    assert (await closed_with(client))[0] == 4400


async def test_bad_tokens_are_refused(server: EdgeServer) -> None:
    """Expired, future and device tokens are refused with 4401/4403."""
    cases = [
        (make_token("a", now_s=time.time() - 7200, ttl_s=60), "token_expired", 4401),
        (make_token("a", not_before_s=time.time() + 600), "token_not_yet_valid", 4401),
        ("e30.e30.x", "invalid_token", 4401),
        (make_token("cart", role="device"), "forbidden", 4403),
    ]
    for token, code, close in cases:
        client = await open_client(server)
        await client.send(type="join", token=token)
        assert (await client.recv())["code"] == code
        assert (await closed_with(client))[0] == close


async def test_flood_is_closed(server: EdgeServer) -> None:
    """A client flooding pings gets rate_limited errors and is closed 4429."""
    client = await open_client(server)
    for _ in range(100):
        await client.send(type="ping")
    codes = [message.get("code") for message in await read_until_closed(client)]
    assert "rate_limited" in codes
    assert client.ws.close_code == 4429


async def test_join_timeout(server: EdgeServer) -> None:
    """A connection that never joins is closed 4408 after the join timeout."""
    client = await open_client(server)
    assert (await client.recv(timeout_s=5))["code"] == "join_timeout"
    assert (await closed_with(client))[0] == 4408


async def test_device_endpoint_not_yet_available(server: EdgeServer) -> None:
    """/device is closed with 1013 until a device endpoint is set."""
    async with connect(ws_url(server, "/device")) as ws:
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert (ws.close_code, ws.close_reason) == (1013, "not yet available")


async def test_server_close_says_going_away(server: EdgeServer) -> None:
    """Closing the server closes every /ws connection with 1001 before it stops."""
    mod, joined = await join(server, "dr-li", moderator=True)
    assert joined["type"] == "joined"
    await server.close()
    assert (await closed_with(mod))[0] == 1001
