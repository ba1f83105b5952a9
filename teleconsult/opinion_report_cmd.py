"""``teleconsult report verify FILE``: check a downloaded consult opinion PDF.

The PDF (``GET /api/v1/consults/{id}/opinion.pdf``, :func:`api.consult_pdf.render_opinion_pdf`)
carries its signed versions. ``verify``:

1. reads them out of the file (none, or two: not a signed opinion);
2. checks every version's Ed25519 signature over its canonical JSON with the key it
   names, the numbering, and that each addendum names the digest of the version it
   corrects (:func:`consults.opinions.verify_chain`), and every co-signature of another
   expert (:func:`consults.opinions.verify_cosignatures`);
3. renders the page again from the signed versions and compares it with the file byte
   for byte: a changed word on the page, an added page or a swapped key fails, signed
   content or not. A file made by another version of the renderer cannot be compared
   and is refused (download it again from the server, which renders it anew);
4. with ``--check-keys``, also that each version's public key is the one on record for
   its signer in the server's store (``--data-dir`` or ``--database-url``, as for
   ``teleconsult audit``): without it, a forger's own key pair would pass steps 1 to 3.

Exit status: 0 verified (the consult, versions, signers, times and key fingerprints on
stdout), 1 not verified (the reason on stderr), 2 the file or the store cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register", "run_verify"]


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``report verify`` to the command line."""
    from teleconsult.audit_cmd import add_database_arguments

    report = commands.add_parser("report", help="consult opinions: verify a downloaded PDF")
    sub = report.add_subparsers(dest="report_command", metavar="SUBCOMMAND", required=True)
    verify = sub.add_parser(
        "verify",
        help="check the signatures of an opinion PDF and that its page is what was signed",
        description="Verify a consult opinion PDF downloaded from teleconsult.",
    )
    verify.add_argument("file", metavar="FILE", type=Path, help="the opinion PDF")
    verify.add_argument(
        "--check-keys",
        action="store_true",
        help="also check each signer's public key against the server's store",
    )
    add_database_arguments(verify)
    verify.set_defaults(handler=run_verify)


def _fail(reason: str, status: int = 1) -> int:
    print(f"NOT VERIFIED: {reason}" if status == 1 else reason, file=sys.stderr)
    return status


def _keys_on_record(args: argparse.Namespace, wanted: list[tuple[str, bytes]]) -> str | None:
    """None when every (signer, key) is on record, else why not. Raises CommandError."""
    from sqlalchemy import select

    from store.consult_schema import signer_keys
    from store.schema import people
    from teleconsult.audit_cmd import open_existing

    engine = open_existing(args)
    try:
        with engine.connect() as conn:
            for signer, key in wanted:
                row = conn.execute(
                    select(signer_keys.c.public_key)
                    .join(people, people.c.id == signer_keys.c.person_id)
                    .where(people.c.username == signer)
                    .where(signer_keys.c.public_key == key.hex())
                ).first()
                if row is None:
                    return f"the key that signed for {signer} is not on record for them"
    finally:
        engine.dispose()
    return None


def run_verify(args: argparse.Namespace) -> int:
    from api.consult_pdf import (
        cosignatures_of,
        read_payload,
        render_opinion_pdf,
        renderer_id,
        versions_of,
    )
    from consults.opinions import verify_chain, verify_cosignatures
    from consults.signatures import SignatureError
    from teleconsult.audit_cmd import CommandError

    path: Path = args.file
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _fail(f"cannot read {path}: {exc.strerror}", 2)
    try:
        payload = read_payload(data)
        versions = versions_of(payload)
        cosignatures = cosignatures_of(payload)
    except (ValueError, KeyError, TypeError) as exc:
        return _fail(str(exc) if isinstance(exc, ValueError) else "not a signed opinion")
    try:
        verify_chain(versions)
        verify_cosignatures(versions, cosignatures)
    except SignatureError as exc:
        return _fail(f"signature: {exc}")
    made_by, mine = payload.get("renderer"), renderer_id()
    if made_by != mine:
        return _fail(
            f"made by {made_by!r}, this verifier renders {mine!r}: download it again to compare"
        )
    if render_opinion_pdf(versions, cosignatures) != data:
        return _fail("the file is not the page that was signed (it was changed)")
    if args.check_keys:
        wanted = [(str(v.document["signer"]), v.public_key) for v in (*versions, *cosignatures)]
        try:
            problem = _keys_on_record(args, wanted)
        except CommandError as exc:
            return _fail(str(exc), 2)
        if problem is not None:
            return _fail(problem)
    first = versions[0].document
    print(f"VERIFIED: consult {first['consult']}, {len(versions)} signed version(s)")
    for version in versions:
        doc = version.document
        print(
            f"  v{doc['version']}: {doc['signer']} at {doc['signed_at']}, "
            f"key {version.signature.key_fingerprint}"
        )
    for cosignature in cosignatures:
        doc = cosignature.document
        print(
            f"  co-signed v{doc['version']}: {doc['signer']} at {doc['signed_at']}, "
            f"key {cosignature.signature.key_fingerprint}"
        )
    if not args.check_keys:
        print("  (keys not checked against the store: add --check-keys on the server)")
    return 0
