"""``teleconsult serve`` and ``teleconsult token``, and the configuration file."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from sessions.errors import InvalidToken
from sessions.tokens import load_secret, verify_token
from teleconsult.cli import main
from teleconsult.config import ConfigError, load_config, parse_duration_s

REPO = Path(__file__).resolve().parents[2]


def _token(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["token", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_token_alone_on_last_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The token is the last line; it verifies with the data dir's secret (made 0600)."""
    code, out, _ = _token(
        capsys,
        *("--identity", "dr-li", "--name", "Dr Li", "--role", "expert", "--room", "c-42"),
        *("--moderator", "--ttl", "30m", "--data-dir", str(tmp_path)),
    )
    assert code == 0
    token = out.strip().splitlines()[-1]
    claims = verify_token(load_secret(tmp_path, environ={}), token)
    assert (claims.identity, claims.name, claims.role, claims.room) == (
        "dr-li",
        "Dr Li",
        "expert",
        "c-42",
    )
    assert claims.permissions == {"publish", "subscribe", "moderate"}
    assert 1790 <= claims.expires_at_s - time.time() <= 1800
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600


def test_token_from_another_server_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A token minted with another data dir's secret does not verify here (wrong signature)."""
    args = ("--identity", "a", "--name", "A", "--role", "observer", "--room", "r")
    _, out, _ = _token(capsys, *args, "--data-dir", str(tmp_path / "one"))
    other = load_secret(tmp_path / "two", environ={})
    with pytest.raises(InvalidToken):
        verify_token(other, out.strip().splitlines()[-1])


@pytest.mark.parametrize("ttl", ["0s", "soon", "-5m"])
def test_token_bad_ttl_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ttl: str
) -> None:
    """A TTL that is not a positive duration exits 2 with a message, no token printed."""
    code, out, err = _token(
        capsys,
        *("--identity", "a", "--name", "A", "--role", "expert", "--room", "r"),
        *(f"--ttl={ttl}", "--data-dir", str(tmp_path)),
    )
    assert (code, out) == (2, "")
    assert "duration" in err


def test_token_unknown_role_is_refused(tmp_path: Path) -> None:
    """An unknown role is refused by the parser."""
    with pytest.raises(SystemExit) as info:
        main(["token", "--identity", "a", "--name", "A", "--role", "admin", "--room", "r"])
    assert info.value.code == 2


def test_durations() -> None:
    """Durations in s, m, h, d and bare seconds."""
    assert [parse_duration_s(t) for t in ("90", "45s", "30m", "2h", "1.5d")] == [
        90,
        45,
        1800,
        7200,
        129600,
    ]


def test_config_file_and_overrides(tmp_path: Path) -> None:
    """TOML sections map to settings, relative paths follow the file, options win."""
    path = tmp_path / "teleconsult.toml"
    path.write_text(
        '[server]\nport = 9000\ndata_dir = "state"\n'
        "[sessions]\ngrace_s = 12\nwaiting_room = false\n"
        '[ice]\nstun_urls = ["stun:127.0.0.1:3478"]\nturn_urls = ["turn:127.0.0.1:3478"]\n'
        'turn_secret = "t"\n'
    )
    config = load_config(path, port=9100)
    assert (config.port, config.data_dir, config.grace_s) == (9100, tmp_path / "state", 12)
    assert not config.core_config().waiting_room
    assert config.ice_config().ice_servers("a", now_s=0)[1]["username"] == "43200:a"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nprot = 1\n", "prot"),
        ("[server]\nport = 'x'\n", "port"),
        ("[server]\nport = 70000\n", "port"),
        ("[ice]\nturn_urls = ['turn:x']\n", "turn_secret"),
        ("[nonsense\n", "TOML"),
        ("[sessions]\ngrace_s = -1\n", "grace_s"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    """Unknown keys, wrong types, bad values and bad TOML are refused, naming what is wrong."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def _start_serve(tmp_path: Path) -> tuple[subprocess.Popen[str], str, list[str]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("TELECONSULT_SECRET", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "teleconsult", "serve", "--port", "0", "--data-dir", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("stop with"):
            break
    match = re.search(r"serving on (http://127\.0\.0\.1:\d+)", "".join(lines))
    if match is None:
        process.kill()
        pytest.fail(f"serve did not start: {''.join(lines)}")
    return process, match.group(1), lines


@pytest.mark.slow
async def test_serve_prints_demo_links_and_stops_on_sigterm(tmp_path: Path) -> None:
    """serve with no config prints two working /join links; SIGTERM stops it with 0."""
    process, base, lines = await asyncio.to_thread(_start_serve, tmp_path)
    try:
        links = [re.search(r"(http://\S+/join\?token=(\S+))", line) for line in lines]
        tokens = [link.group(2) for link in links if link]
        assert len(tokens) == 2
        health = await asyncio.to_thread(lambda: urllib.request.urlopen(f"{base}/healthz").read())
        assert json.loads(health)["status"] == "ok"
        async with connect(base.replace("http", "ws") + "/ws") as ws:
            await ws.send(json.dumps({"type": "join", "token": tokens[0]}))
            joined = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert (joined["type"], joined["room"], joined["identity"]) == (
                "joined",
                "demo",
                "demo-expert",
            )
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
