"""A recorded consult in a process of its own, for the SIGKILL and disk-full tests.

Runs an SFU recording ``--data-dir`` with two aiortc participants in one room, and
prints one JSON line per event: ``{"recording": ...}`` once tracks are being
written, ``{"on": false, "error": ...}`` when recording fails, and
``{"stats": ...}`` every 0.2 s. ``--max-file-bytes`` sets ``RLIMIT_FSIZE`` (with
SIGXFSZ ignored, writes past it fail with EFBIG, as a full disk fails with ENOSPC).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal

from media.sfu import Sfu
from tests.media.peers import Client


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--max-file-bytes", type=int)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    if args.max_file_bytes:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.max_file_bytes, args.max_file_bytes))

    def on_recording(room_id: str, on: bool, error: str | None) -> None:
        say(room=room_id, on=on, error=error)

    sfu = Sfu(data_dir=args.data_dir, on_recording=on_recording)
    sfu.set_recording("room", True)
    a, b = Client(sfu, "a", (220, 30, 30)), Client(sfu, "b", (30, 200, 30))
    await a.join("room")
    await b.join("room")
    say(recording=sfu.recording("room"))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.seconds
    while loop.time() < deadline:
        await asyncio.sleep(0.2)
        say(stats=sfu.stats())
    await sfu.close()
    await a.close()
    await b.close()


if __name__ == "__main__":
    asyncio.run(main())
