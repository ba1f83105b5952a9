"""The signed opinion as PDF (``GET /api/v1/consults/{id}/opinion.pdf``): rendering, and the
signed versions it carries for ``teleconsult report verify``.

The PDF prints only what is signed: every version's document (the opinion, the patient and
institutions of its ``context``, the signer, the signing time in UTC, the key fingerprint).
The signed versions ride inside it (:data:`PAYLOAD_MARKER`), and rendering is
deterministic (the PDF's dates are the signing time), so ``teleconsult report verify``
checks the signatures and then renders the page again from them: any change to the file,
seen or not, fails.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from consults.opinions import SignedVersion
from consults.signatures import Signature

__all__ = [
    "PAYLOAD_MARKER",
    "RENDERER",
    "cosignatures_of",
    "payload_of",
    "read_payload",
    "render_opinion_pdf",
    "renderer_id",
    "versions_of",
]


# The PDF

RENDERER: Final = "teleconsult-opinion-pdf/1"
# The signed versions ride in the PDF as one embedded file whose content is this marker
# and the base64 of their JSON (ASCII, uncompressed: found again by a plain search).
PAYLOAD_MARKER: Final = b"TELECONSULT-SIGNED-OPINION:"
_PAYLOAD_RE: Final = re.compile(re.escape(PAYLOAD_MARKER) + rb"([A-Za-z0-9+/=]+)")

_SEX_TEXT: Final = {"male": "男 male", "female": "女 female", "unknown": "未知 unknown"}
_SECTIONS: Final = (
    ("findings", "所见 Findings"),
    ("diagnosis", "诊断 Diagnosis"),
    ("recommendations", "建议 Recommendations"),
    ("referral_advice", "转诊建议 Referral advice"),
)


def renderer_id() -> str:
    import fpdf

    return f"{RENDERER} fpdf2/{fpdf.__version__}"


def _items(signed: Sequence[SignedVersion]) -> list[dict[str, Any]]:
    return [
        {
            "document": dict(v.document),
            "signature": v.signature.as_dict(),
            "public_key": base64.b64encode(v.public_key).decode("ascii"),
        }
        for v in signed
    ]


def payload_of(
    versions: Sequence[SignedVersion], cosignatures: Sequence[SignedVersion] = ()
) -> dict[str, Any]:
    """What the PDF carries: the renderer, and each version's and co-signature's
    document, signature and key."""
    return {
        "kind": "teleconsult.signed_opinion",
        "renderer": renderer_id(),
        "versions": _items(versions),
        "cosignatures": _items(cosignatures),
    }


def versions_of(payload: Mapping[str, Any]) -> list[SignedVersion]:
    """The signed versions of a payload (:func:`payload_of`).

    Raises
    ------
    ValueError
        The payload is not of that shape.
    """
    if payload.get("kind") != "teleconsult.signed_opinion":
        raise ValueError("not a signed opinion")
    out = _signed_of(payload.get("versions") or [])
    if not out:
        raise ValueError("no signed version")
    return out


def cosignatures_of(payload: Mapping[str, Any]) -> list[SignedVersion]:
    """The co-signatures of a payload (none in one made before there were any)."""
    return _signed_of(payload.get("cosignatures") or [])


def _signed_of(items: Sequence[Any]) -> list[SignedVersion]:
    out: list[SignedVersion] = []
    for item in items:
        signature = item["signature"]
        out.append(
            SignedVersion(
                document=dict(item["document"]),
                signature=Signature(
                    algorithm=str(signature["algorithm"]),
                    key_fingerprint=str(signature["key_fingerprint"]),
                    value=str(signature["value"]),
                ),
                public_key=base64.b64decode(str(item["public_key"]), validate=True),
            )
        )
    return out


def read_payload(pdf: bytes) -> dict[str, Any]:
    """The payload embedded in an opinion PDF.

    Raises
    ------
    ValueError
        None, or more than one, or one that is not JSON.
    """
    found = _PAYLOAD_RE.findall(pdf)
    if len(found) != 1:
        raise ValueError("the file carries no signed opinion (or more than one)")
    try:
        payload = json.loads(base64.b64decode(found[0], validate=True))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("the signed opinion in the file cannot be read") from exc
    if not isinstance(payload, dict):
        raise ValueError("the signed opinion in the file cannot be read")
    return payload


def _text(document: Mapping[str, Any], *path: str) -> str:
    value: Any = document
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


def render_opinion_pdf(
    versions: Sequence[SignedVersion], cosignatures: Sequence[SignedVersion] = ()
) -> bytes:
    """The opinion's PDF: one section per signed version, nothing on it unsigned.

    A4 portrait, Noto Sans CJK; Chinese and English labels; the signer, the signing
    time (UTC) and the key fingerprint under each version. The same versions always
    give the same bytes (the document dates are the last signing time).

    Raises
    ------
    ValueError
        No version.
    """
    from fpdf import FPDF

    from ecg.paper import CJK_FONT, CJK_FONT_BOLD

    if not versions:
        raise ValueError("nothing is signed")
    last = versions[-1].document
    latest = max(_text(v.document, "signed_at") for v in (*versions, *cosignatures))
    signed_at = dt.datetime.fromisoformat(latest.replace("Z", "+00:00"))
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_creation_date(signed_at)
    pdf.set_creator("teleconsult")
    pdf.set_title(f"会诊意见 Consultation opinion {_text(last, 'consult')}")
    pdf.set_margins(18, 16, 18)
    pdf.set_auto_page_break(True, margin=16)
    pdf.add_font("cjk", "", CJK_FONT.path, collection_font_number=CJK_FONT.index)
    pdf.add_font("cjk", "B", CJK_FONT_BOLD.path, collection_font_number=CJK_FONT_BOLD.index)
    pdf.add_page()
    width = pdf.epw

    def line(label: str, value: str, *, size: float = 10.0) -> None:
        pdf.set_font("cjk", "B", size)
        pdf.cell(44, 6, label)
        pdf.set_font("cjk", "", size)
        pdf.multi_cell(width - 44, 6, value or "—", new_x="LMARGIN", new_y="NEXT")

    first = versions[0].document
    pdf.set_font("cjk", "B", 16)
    pdf.cell(width, 10, "远程会诊意见书  Teleconsultation Opinion", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", "", 9)
    pdf.cell(width, 5, f"会诊编号 Consult {_text(first, 'consult')}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    line("患者 Patient", _text(first, "context", "patient_name"))
    line("性别 Sex", _SEX_TEXT.get(_text(first, "context", "patient_sex"), ""))
    line("出生日期 Born", _text(first, "context", "patient_birth_date"))
    line("病历号 Record no.", _text(first, "context", "record_number"))
    line("申请机构 Clinic", _text(first, "context", "clinic"))
    line("会诊中心 Centre", _text(first, "context", "centre"))
    line("专科 Specialty", _text(first, "context", "specialty"))
    for version in versions:
        doc = version.document
        number = _text(doc, "version")
        pdf.ln(4)
        pdf.set_draw_color(120, 120, 120)
        pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + width, pdf.get_y())
        pdf.ln(2)
        pdf.set_font("cjk", "B", 12)
        title = "会诊意见 Opinion" if number == "1" else f"补充更正 Addendum (v{number})"
        pdf.cell(width, 8, title, new_x="LMARGIN", new_y="NEXT")
        if doc.get("corrects"):
            pdf.set_font("cjk", "", 8)
            pdf.multi_cell(
                width, 4, f"更正 Corrects SHA-256 {_text(doc, 'corrects')}", new_x="LMARGIN"
            )
            pdf.ln(1)
        for key, label in _SECTIONS:
            value = _text(doc, "opinion", key)
            if key == "referral_advice" and not value:
                continue
            pdf.set_font("cjk", "B", 10)
            pdf.cell(width, 6, label, new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("cjk", "", 10)
            pdf.multi_cell(width, 5.5, value or "—", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        signer = " ".join(
            part
            for part in (
                _text(doc, "context", "signer_name"),
                _text(doc, "context", "signer_title"),
                _text(doc, "context", "signer_institution"),
            )
            if part
        )
        line("签名医师 Signed by", f"{signer} ({_text(doc, 'signer')})", size=9)
        line("签名时间 Signed at", f"{_text(doc, 'signed_at')} (UTC)", size=9)
        line("签名算法 Algorithm", version.signature.algorithm, size=9)
        line("公钥指纹 Key SHA-256", version.signature.key_fingerprint, size=9)
        for cosignature in cosignatures:
            co = cosignature.document
            if _text(co, "version") != number:
                continue
            pdf.ln(1)
            names = (_text(co, "context", k) for k in ("signer_name", "signer_title"))
            who = " ".join(n for n in names if n)
            line("会签专家 Co-signed by", f"{who} ({_text(co, 'signer')})", size=9)
            if _text(co, "comment"):
                line("会签意见 Remark", _text(co, "comment"), size=9)
            line("签名时间 Signed at", f"{_text(co, 'signed_at')} (UTC)", size=9)
            line("公钥指纹 Key SHA-256", cosignature.signature.key_fingerprint, size=9)
    pdf.ln(4)
    pdf.set_font("cjk", "", 8)
    pdf.multi_cell(
        width,
        4,
        "本意见书经电子签名；以 teleconsult report verify 文件名 核验。"
        " This opinion is electronically signed; check it with "
        "`teleconsult report verify FILE`.",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    payload = json.dumps(
        payload_of(versions, cosignatures), sort_keys=True, ensure_ascii=True, separators=(",", ":")
    ).encode("ascii")
    pdf.embed_file(
        bytes=PAYLOAD_MARKER + base64.b64encode(payload),
        basename="signed-opinion.txt",
        modification_date=signed_at,
        mime_type="text/plain",
        compress=False,
    )
    return bytes(pdf.output())
