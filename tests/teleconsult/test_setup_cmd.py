"""``teleconsult setup``: creates the first deployment admin once, who can then log in;
refuses a second time and a bad password; imports no numerical library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from consults.accounts import Accounts
from store.stores import open_store

PASSWORD = "first deployment passphrase"


def run_setup(data_dir: Path, username: str, password: str) -> subprocess.CompletedProcess[str]:
    """The command in a child process, the password on its standard input."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "teleconsult",
            "setup",
            "--admin",
            username,
            "--password-stdin",
            "--data-dir",
            str(data_dir),
        ],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_first_admin_created_once_and_logs_in(tmp_path: Path) -> None:
    """Exit 0 and a deployment admin who logs in; a second run exits 1 and adds nobody."""
    data = tmp_path / "data"
    first = run_setup(data, "ops", PASSWORD)
    assert first.returncode == 0, first.stderr
    assert PASSWORD not in first.stdout + first.stderr
    second = run_setup(data, "ops2", PASSWORD)
    assert second.returncode == 1
    assert "exists already" in second.stderr
    stores = open_store(data_dir=data)
    try:
        accounts = Accounts(
            directory=stores.directory,
            credentials=stores.credentials,
            sessions=stores.sessions,
            audit=stores.audit,
        )
        result = accounts.login("ops", PASSWORD)
        assert result.principal.person.is_deployment_admin
        assert result.principal.person.institution is None
        assert stores.directory.person_by_username("ops2") is None
    finally:
        stores.close()


def test_bad_password_or_username_refused(tmp_path: Path) -> None:
    """A password or username that breaks the rules exits 1 with the reason, nobody made."""
    data = tmp_path / "data"
    short = run_setup(data, "ops", "short")
    assert short.returncode == 1
    assert "at least 8 characters" in short.stderr
    bad_name = run_setup(data, "Ops Admin", PASSWORD)
    assert bad_name.returncode == 1
    assert "username" in bad_name.stderr
    assert run_setup(data, "ops", PASSWORD).returncode == 0


def test_setup_imports_no_numerical_library(tmp_path: Path) -> None:
    """The command's own code pulls in neither numpy, scipy nor numba."""
    script = (
        "import sys, io, argparse\n"
        "from teleconsult import setup_cmd\n"
        "p = argparse.ArgumentParser(); c = p.add_subparsers()\n"
        "setup_cmd.register(c)\n"
        "a = p.parse_args(['setup', '--admin', 'ops', '--password-stdin',\n"
        f"                 '--data-dir', {str(tmp_path)!r}])\n"
        f"sys.stdin = io.StringIO({PASSWORD!r} + '\\n')\n"
        "assert a.handler(a) == 0\n"
        "print(sorted(m for m in ('numpy', 'scipy', 'numba') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
