"""``teleconsult recording list`` and ``recording export`` on a real recorded folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from media.recorder import Recorder
from sessions.store import AuditEntry
from store.audit import AuditQuery, query
from store.stores import open_store
from teleconsult.cli import main
from tests.media import synthetic
from tests.media.probe import ffprobe


@pytest.fixture
async def data_dir(tmp_path: Path) -> Path:
    """A data folder with one stopped recording (two participants) and one unreadable."""
    recorder = Recorder(tmp_path)
    recorder.start("room-7")
    for participant in ("clinic", "expert"):
        for kind, frames in (("video", synthetic.video(1.0)), ("audio", synthetic.audio(1.0))):
            source = f"{participant}-{kind}"
            recorder.add_track("room-7", participant, 0, source, kind)
            for f in frames:
                recorder.write(source, f.mime_type, f.data, f.pts, f.keyframe)
    await recorder.close()
    (tmp_path / "recordings" / "zz-broken").mkdir()
    # The join rows the server wrote when they entered: participant id -> name.
    stores = open_store(data_dir=tmp_path)
    stores.signaling.write(
        [
            AuditEntry(
                time="2026-12-02T09:00:00.000Z",
                room="room-7",
                actor=identity,
                action="join",
                detail={"role": role, "participant_id": participant, "name": name},
            )
            for identity, participant, name, role in (
                ("li.doctor", "clinic", "李医生", "applicant"),
                ("wang.expert", "expert", "王主任", "expert"),
            )
        ]
    )
    stores.close()
    return tmp_path


def test_list_shows_recordings_and_unreadable_ones(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The listing has the recording's room, state, files and participants, and the broken one."""
    assert main(["recording", "list", "--data-dir", str(data_dir), "--json"]) == 0
    good, broken = json.loads(capsys.readouterr().out)
    assert good["room"] == "room-7"
    assert good["state"] == "stopped"
    assert good["files"] == 4
    assert good["participants"] == ["clinic", "expert"]
    assert good["names"] == ["李医生", "王主任"]
    assert broken == {"id": "zz-broken", "state": "unreadable", "error": broken["error"]}
    assert "no manifest" in broken["error"]
    assert main(["recording", "list", "--data-dir", str(data_dir)]) == 0
    table = capsys.readouterr().out
    assert good["id"] in table
    assert "李医生, 王主任" in table


def test_export_writes_one_file_with_both_participants(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Export makes one WebM two tiles wide with one mixed audio stream."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (make sysdeps installs it)")
    main(["recording", "list", "--data-dir", str(data_dir), "--json"])
    recording = json.loads(capsys.readouterr().out)[0]["id"]
    out = tmp_path / "consult.webm"
    assert (
        main(["recording", "export", recording, "--out", str(out), "--data-dir", str(data_dir)])
        == 0
    )
    streams = {s["codec_type"]: s for s in ffprobe(out)["streams"]}
    assert streams["video"]["width"] == 2 * 640
    assert streams["audio"]["codec_name"] == "opus"
    stores = open_store(data_dir=data_dir)
    try:
        with stores.engine.connect() as conn:
            rows = query(conn, AuditQuery(action="recording.exported"))
    finally:
        stores.close()
    assert [r.target for r in rows] == [f"recording:{recording}"]


@pytest.mark.parametrize(
    ("recording", "out", "message"),
    [
        ("nope", "x.mp4", "no recording 'nope'"),
        ("../x", "x.mp4", "no recording"),
        ("..", "x.mp4", "no recording '..'"),
        (".", "x.mp4", "no recording '.'"),
        ("", "x.mp4", "no recording ''"),
    ],
)
def test_bad_export_requests_exit_1(
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    recording: str,
    out: str,
    message: str,
) -> None:
    """An unknown or path-like id is refused with a message and status 1."""
    argv = ["recording", "export", recording, "--out", str(tmp_path / out)]
    assert main([*argv, "--data-dir", str(data_dir)]) == 1
    assert message in capsys.readouterr().err


def test_export_to_a_wrong_suffix_exits_1(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An output that is neither .mp4 nor .webm is refused before ffmpeg runs."""
    main(["recording", "list", "--data-dir", str(data_dir), "--json"])
    recording = json.loads(capsys.readouterr().out)[0]["id"]
    argv = ["recording", "export", recording, "--out", str(tmp_path / "x.avi")]
    assert main([*argv, "--data-dir", str(data_dir)]) == 1
    assert ".mp4 or .webm" in capsys.readouterr().err
    assert not (tmp_path / "x.avi").exists()
