"""``teleconsult setup --admin USERNAME --password-stdin``: the first deployment admin.

A fresh install has nobody who can log in; this creates the one person who then creates
everything else in the browser (institutions, people, devices). It refuses once any
deployment admin exists, so it cannot be used to take over a running deployment: later
admins are made by an admin, and audited.

The password is read from standard input (its first line), never from the command line,
where other users of the machine could read it in the process list. The store is the
server's (``--data-dir``/``--database-url``, as ``teleconsult audit``), created and
migrated to the newest schema if needed.

Exit status: 0 created; 1 refused (an admin exists, or the username or password breaks
the rules: the reason is printed); 2 the store cannot be opened. Only the standard
library is imported until the command runs (no numpy), so it starts fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from teleconsult.audit_cmd import add_database_arguments

__all__ = ["register", "run_setup"]

DEFAULT_DISPLAY_NAME = "Administrator"


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the ``setup`` command."""
    parser = commands.add_parser(
        "setup",
        help="create the first deployment admin",
        description="Create the first deployment admin (refused once one exists).",
    )
    parser.add_argument("--admin", required=True, metavar="USERNAME", help="their username")
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        required=True,
        help="read the password from the first line of standard input",
    )
    parser.add_argument(
        "--display-name",
        default=DEFAULT_DISPLAY_NAME,
        help=f"the name shown for them, Chinese or Latin (default {DEFAULT_DISPLAY_NAME})",
    )
    add_database_arguments(parser)
    parser.set_defaults(handler=run_setup)


def _read_password() -> str:
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def run_setup(args: argparse.Namespace) -> int:
    """Create the first deployment admin; see the module docstring for exit statuses."""
    password = _read_password().removesuffix("\r")
    from sqlalchemy.exc import SQLAlchemyError

    from consults.accounts import Accounts, DirectoryAdmin
    from consults.errors import Conflict, ConsultsError
    from store.engine import StoreConfigError
    from store.stores import open_store

    try:
        stores = open_store(data_dir=args.data_dir, database_url=args.database_url or None)
    except StoreConfigError as exc:
        print(f"setup: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(f"setup: cannot open the database: {type(exc).__name__}", file=sys.stderr)
        return 2
    try:
        accounts = Accounts(
            directory=stores.directory,
            credentials=stores.credentials,
            sessions=stores.sessions,
            audit=stores.audit,
        )
        admin = DirectoryAdmin(accounts).create_first_admin(
            username=args.admin, display_name=args.display_name, password=password
        )
    except Conflict:
        print("setup: refused: a deployment admin exists already", file=sys.stderr)
        return 1
    except ConsultsError as exc:
        print(f"setup: refused: {exc.reason}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(f"setup: the database failed: {type(exc).__name__}", file=sys.stderr)
        return 2
    finally:
        stores.close()
    print(f"created the deployment admin {admin.username!r}: log in at /static/login.html")
    return 0
