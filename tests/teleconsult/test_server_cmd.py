"""``teleconsult serve`` and ``teleconsult token``, and the configuration file."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage

from consults.lifecycle import Priority
from consults.requests import MediaType
from consults.settings import ConsultSettings
from sessions.errors import InvalidToken
from sessions.tokens import load_secret, verify_token
from signaling.config import CoreConfig
from teleconsult.cli import main
from teleconsult.config import Config, ConfigError, load_config, parse_duration_s

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
    """TOML sections are the packages' own settings; paths follow the file; options win."""
    path = tmp_path / "teleconsult.toml"
    path.write_text(
        '[server]\nport = 9000\n[data]\ndata_dir = "state"\n'
        "[core]\ngrace_s = 12\nwaiting_room = false\n"
        '[ice]\nstun_urls = ["stun:127.0.0.1:3478"]\nturn_urls = ["turn:127.0.0.1:3478"]\n'
        'turn_secret = "t"\n'
    )
    config = load_config(path, environ={}, port=9100)
    assert (config.server.port, config.data_dir, config.core.grace_s) == (
        9100,
        tmp_path / "state",
        12,
    )
    assert isinstance(config.core, CoreConfig)  # the core's own type, handed over whole
    assert not config.core.waiting_room
    assert config.ice.ice_servers("a", now_s=0)[1]["username"] == "43200:a"


def test_consult_reading_and_upload_sections(tmp_path: Path) -> None:
    """The deadlines per priority, the critical-value acknowledgement time and the upload
    limits are configuration, each section the service's own settings type."""
    path = tmp_path / "teleconsult.toml"
    path.write_text(
        "[consults]\n"
        "accept_within_s = { routine = 3600, urgent = 1800, emergency = 300 }\n"
        "expire_after_s = { routine = 7200, urgent = 3600, emergency = 900 }\n"
        "attachment_limits_bytes = { 'application/pdf' = 1048576 }\n"
        "[readings]\nacknowledge_within_s = 300\n"
        "[uploads]\nmax_signal_bytes = 2097152\n"
    )
    environ = {"TELECONSULT_CONSULTS__REMIND_BEFORE_S": "600"}
    config = load_config(path, environ=environ)
    assert isinstance(config.consults, ConsultSettings)
    assert config.consults.accept_within_s[Priority.EMERGENCY] == 300
    assert config.consults.expire_after_s[Priority.ROUTINE] == 7200
    assert config.consults.attachment_limits_bytes == {MediaType.PDF: 1048576}
    assert config.consults.remind_before_s == 600
    assert config.readings.acknowledge_within_s == 300
    assert config.uploads.max_signal_bytes == 2097152
    assert load_config(None, environ={}).consults == ConsultSettings()


def test_environment_between_file_and_options(tmp_path: Path) -> None:
    """TELECONSULT_<SECTION>__<KEY> overrides the file; a command-line option the variable."""
    path = tmp_path / "teleconsult.toml"
    path.write_text("[server]\nport = 9000\n[core]\ngrace_s = 12\n")
    environ = {
        "TELECONSULT_CORE__GRACE_S": "7.5",
        "TELECONSULT_SERVER__PORT": "9200",
        "TELECONSULT_SERVER__HOST": "0.0.0.0",
        "TELECONSULT_ICE__STUN_URLS": '["stun:a:3478"]',
    }
    config = load_config(path, environ=environ, port=9300)
    assert (config.core.grace_s, config.server.port, config.server.host) == (7.5, 9300, "0.0.0.0")
    assert list(config.ice.stun_urls) == ["stun:a:3478"]
    with pytest.raises(ConfigError, match="grace_s"):
        load_config(None, environ={"TELECONSULT_CORE__GRACE_S": "-1"})
    with pytest.raises(ConfigError, match=r"core\.nonsense"):
        load_config(None, environ={"TELECONSULT_CORE__NONSENSE": "1"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nprot = 1\n", "prot"),
        ("[server]\nport = 'x'\n", "port"),
        ("[server]\nport = 70000\n", "port"),
        ("[ice]\nturn_urls = ['turn:x']\n", "turn_secret"),
        ("[nonsense\n", "TOML"),
        ("[core]\ngrace_s = -1\n", "grace_s"),
        ("[sessions]\ngrace_s = 1\n", "sessions"),
        ("[data]\ncert = 'c.pem'\n", "key"),
        ("[server]\nmax_frame_bytes = 2048\n", "max_frame_bytes"),
        ("[consults]\naccept_within_s = { routine = 60 }\n", "no deadline for priority urgent"),
        ("[consults]\nwarn_fraction = 1.5\n", "warn_fraction"),
        ("[consults]\nattachment_limits_bytes = { 'text/html' = 5 }\n", "text/html"),
        ("[readings]\nacknowledge_within_s = 0\n", "acknowledge_within_s"),
        ("[uploads]\nmax_leads = 16\n", "max_leads"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    """Unknown keys, wrong types, bad values and bad TOML are refused, naming what is wrong."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


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


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_serves_wss_and_https(tmp_path: Path) -> None:
    """With --cert/--key the server speaks wss:// and https:// only."""
    import ssl

    from teleconsult.app import build_server
    from tests.signaling.conftest import FakeMedia

    cert, key = _self_signed(tmp_path)
    config = load_config(None, port=0, data_dir=tmp_path / "var", cert=cert, key=key)
    server = build_server(config, media=FakeMedia())
    await server.start()
    try:
        assert server.url.startswith("https://")
        client_context = ssl.create_default_context(cafile=str(cert))
        token = main_token(tmp_path / "var")
        async with connect(f"wss://127.0.0.1:{server.port}/ws", ssl=client_context) as ws:
            await ws.send(json.dumps({"type": "join", "token": token}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "joined"
        with pytest.raises(InvalidMessage, match="valid HTTP response"):
            async with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=2):
                pass
    finally:
        await server.close()


def main_token(data_dir: Path) -> str:
    """A moderator token signed with ``data_dir``'s secret."""
    from sessions.tokens import mint_token

    return mint_token(
        load_secret(data_dir, environ={}),
        identity="dr-li",
        name="Dr Li",
        role="expert",
        room="r",
        permissions=frozenset({"publish", "subscribe", "moderate"}),
    )


def test_bad_certificate_is_a_clear_error(tmp_path: Path) -> None:
    """A certificate that cannot be loaded is refused with a message naming it."""
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    config = load_config(None, cert=tmp_path / "cert.pem", key=tmp_path / "key.pem")
    with pytest.raises(ConfigError, match=r"cert\.pem"):
        config.ssl_context()


def test_missing_media_backend_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an importable media.sfu the server refuses to start, saying why."""
    from teleconsult.app import AppError, build_server

    monkeypatch.setitem(sys.modules, "media.sfu", None)
    with pytest.raises(AppError, match=r"media\.sfu\.Sfu cannot be loaded"):
        build_server(load_config(None, data_dir=tmp_path))


def test_token_side_imports_nothing_heavy() -> None:
    """server_cmd, config and app import no numpy, scipy, numba, aiortc or PyAV at import.

    `teleconsult token` and `--version` must start in well under a second: the server's
    heavy packages are imported only inside the functions that build it.
    """
    heavy = ("numpy", "scipy", "numba", "aiortc", "av")
    probe = (
        "import sys\n"
        "import teleconsult.app, teleconsult.config, teleconsult.server_cmd\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == ""


def test_token_links_follow_the_role_and_the_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A room token links to /join at the URL given; a viewer's to /ecg as well; a
    device's names the /device endpoint and no page."""
    base = ("--data-dir", str(tmp_path), "--url", "https://consult.example.org:9443/")
    _, room, _ = _token(capsys, "--identity", "a", "--name", "A", "--role", "expert",
                        "--room", "r", *base)  # fmt: skip
    assert "join: https://consult.example.org:9443/join?token=" in room
    assert "/ecg?" not in room
    _, viewer, _ = _token(capsys, "--identity", "v", "--name", "V", "--role", "observer",
                          "--room", "r", *base)  # fmt: skip
    assert "ecg: https://consult.example.org:9443/ecg?token=" in viewer
    _, device, _ = _token(capsys, "--identity", "cart", "--name", "C", "--role", "device",
                          "--room", "r", *base)  # fmt: skip
    assert "wss://consult.example.org:9443/device" in device
    assert "/join?" not in device
    assert "/ecg?" not in device


def test_the_documented_configuration_is_the_default(tmp_path: Path) -> None:
    """docs/operations.md's TOML block loads, and every value it shows is the default."""
    text = (REPO / "docs" / "operations.md").read_text()
    block = text.split("## Configuration file (TOML)")[1].split("```toml\n")[1].split("```")[0]
    path = tmp_path / "documented.toml"
    path.write_text(block)
    documented, default = load_config(path, environ={}), Config()
    shown = tomllib.loads(block)
    assert set(shown) == {f.name for f in dataclasses.fields(Config)}
    for section, keys in shown.items():
        for key in keys:
            if key in ("data_dir", "web_dir"):  # relative to the file
                continue
            value = getattr(getattr(documented, section), key)
            expected = getattr(getattr(default, section), key)
            if isinstance(value, list | tuple):  # TOML arrays; tuples in the settings
                value, expected = tuple(value), tuple(expected)
            assert value == expected, (section, key)
