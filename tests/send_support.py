"""What the send tests share: a composed issue in the outbox, readers in the store, a DKIM key.

The outbox folder is written the way compose writes it (email.html and
issue.txt with the per-reader placeholders, message.json from RenderedIssue),
so the send tests do not depend on the renderer.
"""

from __future__ import annotations

import email
import email.policy
import html
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import insert

from newsletter.core.models import Issue, Subscriber, new_uid, table, utcnow
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue.outbox import FIRST_NAME, UNSUBSCRIBE_URL, IssueFolder, RenderedIssue

ISSUE = "2025-W24"
SUBJECT = "Radiology AI Weekly #12 — CT triage, MRI foundation models"

TITLES = [
    "Deep learning triage of head CT for intracranial haemorrhage: a multicentre study",
    "A foundation model for knee MRI: pre-training on 140 000 examinations",
    "Mammography screening with AI as second reader in 55 579 women",
    "Self-supervised segmentation of lung nodules on low-dose CT",
    "Uncertainty-aware detection of pneumothorax on chest radiographs",
    "Federated learning for prostate MRI lesion detection across 9 sites",
    "Large language models summarising radiology reports: errors and omissions",
    "Contrast-free liver lesion characterisation with diffusion MRI and transformers",
    "Bone age assessment with vision transformers: external validation",
    "Ultrasound thyroid nodule risk stratification: a randomised reader study",
]

ABSTRACT = (
    "Background: Imaging volumes grow faster than the radiology workforce, and the "
    "delay before a critical finding is read can harm patients. Methods: We trained a "
    "model on 41 212 examinations from three sites (β = 0.9; p < 0.001) and tested it on "
    "9 850 examinations from a fourth site — with readers blinded to the model’s output. "
    "Results: The model reached an AUC of 0.93 (95% CI: 0.91, 0.95) compared with 0.88 "
    "for the reference standard; median time to report fell from 41 to 12 minutes. "
    "Conclusion: Triage by a deep learning model shortened the time to report critical "
    "findings without loss of accuracy, in a setting where “every minute counts”. "
)


def issue_html(papers: int = 10) -> str:
    """An email.html like compose's: inlined styles, long lines, placeholders in place."""
    style = (
        'style="font-family:Helvetica,Arial,sans-serif;font-size:16px;line-height:1.5;'
        'color:#1f2933;margin:0 0 12px 0;padding:0"'
    )
    cards = []
    for i in range(papers):
        title = html.escape(TITLES[i % len(TITLES)])
        cards.append(
            f'<tr><td style="padding:24px 32px;border-bottom:1px solid #e4e7eb;background:#ffffff">'
            f'<p {style}><span style="font-size:12px;text-transform:uppercase;color:#52606d">'
            f"arXiv · preprint · 2025-06-0{i % 9 + 1}</span></p>"
            f'<h2 style="font-size:20px;line-height:1.3;margin:0 0 8px 0">'
            f'<a href="https://arxiv.org/abs/2506.{1000 + i:05d}" style="color:#0b4f8a;text-decoration:none">{title}</a></h2>'
            f"<p {style}>Ana Pérez, Jörg Müller, Li Wei, Søren Kierkegaard, et al.</p>"
            f"<p {style}>{html.escape(ABSTRACT * 3)}</p>"
            f'<p {style}><a href="https://doi.org/10.1000/xyz{i}" style="color:#0b4f8a">Read the paper →</a></p>'
            f"</td></tr>\n"
        )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(SUBJECT)}</title></head>\n"
        '<body style="margin:0;padding:0;background:#f5f7fa">\n'
        '<div style="display:none;max-height:0;overflow:hidden">Ten papers this week.</div>\n'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="max-width:640px;margin:0 auto">\n'
        f'<tr><td style="padding:32px"><p {style}>Hi {FIRST_NAME},</p>'
        f"<p {style}>Here are this week’s ten papers.</p></td></tr>\n"
        + "".join(cards)
        + "<tr><td>\n.5 mm slices; see the methods.\n</td></tr>\n"
        + f'<tr><td style="padding:24px 32px;font-size:12px;color:#52606d">'
        "You get this email because you subscribed to Test Weekly. "
        f'<a href="{UNSUBSCRIBE_URL}" style="color:#52606d">Unsubscribe</a> with one click.'
        "<br>Test Weekly, 12 Example Street, 1000 Brussels</td></tr>\n"
        "</table>\n</body></html>\n"
    )


def issue_text(papers: int = 10) -> str:
    lines = [f"Hi {FIRST_NAME},", "", "Here are this week’s ten papers.", ""]
    for i in range(papers):
        lines += [
            f"{i + 1}. {TITLES[i % len(TITLES)]}",
            "   Ana Pérez, Jörg Müller, Li Wei, et al. — arXiv preprint",
            f"   https://arxiv.org/abs/2506.{1000 + i:05d}",
            "",
            "   " + ABSTRACT.strip(),
            "",
        ]
    # lines that start with a dot must survive SMTP's dot-stuffing
    lines += [".5 mm slices were used throughout.", "...", "."]
    lines += [
        "--",
        f"Unsubscribe: {UNSUBSCRIBE_URL}",
        "Test Weekly, 12 Example Street, Brussels",
        "",
    ]
    return "\n".join(lines)


def write_issue(
    settings: Settings,
    store: Store | None,
    issue_id: str = ISSUE,
    *,
    papers: int = 10,
    html_text: str | None = None,
    text: str | None = None,
    subject: str = SUBJECT,
) -> IssueFolder:
    """A composed issue in the outbox (and its row in the store, when one is given)."""
    folder = IssueFolder.of(settings.outbox_dir, issue_id)
    folder.root.mkdir(parents=True, exist_ok=True)
    folder.email_html.write_text(
        html_text if html_text is not None else issue_html(papers), "utf-8"
    )
    folder.text.write_text(text if text is not None else issue_text(papers), "utf-8")
    folder.web_html.write_text("<html><body>web copy</body></html>\n", "utf-8")
    rendered = RenderedIssue(
        issue_id=issue_id,
        number=12,
        subject=subject,
        preheader="Ten papers this week.",
        date="2025-06-16",
        window_start="2025-06-09",
        window_end="2025-06-15",
        web_url=f"{settings.web.base_url}/issues/{issue_id}",
        paper_count=papers,
        rendered_at="2025-06-16T06:00:00+00:00",
    )
    folder.message.write_text(rendered.to_json(), "utf-8")
    if store is not None:
        add_issue_row(store, issue_id, number=12, subject=subject)
    return folder


def add_issue_row(
    store: Store, issue_id: str = ISSUE, *, number: int = 1, subject: str = SUBJECT
) -> None:
    """The issue's row (week 2025-W24, a draft), unless it is stored already."""
    with store.write() as session:
        if session.get(Issue, issue_id) is None:
            session.add(
                Issue(
                    id=issue_id,
                    number=number,
                    subject=subject,
                    window_start=date(2025, 6, 9),
                    window_end=date(2025, 6, 15),
                )
            )


def add_readers(
    store: Store,
    count: int,
    *,
    status: str = "confirmed",
    domain: str = "example.com",
    prefix: str = "reader",
    start: int = 0,
    names: bool = True,
) -> list[str]:
    """Insert ``count`` subscribers in one statement; returns their addresses in id order."""
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for i in range(start, start + count):
        address = f"{prefix}{i:06d}@{domain}"
        rows.append(
            {
                "uid": new_uid(),
                "email": address,
                "email_key": address.lower(),
                "name": (f"Reader{i} Number{i}" if names else ""),
                "status": status,
                "consent_source": "import",
                "created_at": now,
                "updated_at": now,
                "confirmed_at": now if status == "confirmed" else None,
                "status_reason": "",
            }
        )
    subscribers = table(Subscriber)
    with store.write() as session:
        for i in range(0, len(rows), 5000):
            session.connection().execute(insert(subscribers), rows[i : i + 5000])
    return [r["email"] for r in rows]


def add_reader(store: Store, address: str, name: str = "", status: str = "confirmed") -> Subscriber:
    with store.write() as session:
        sub = Subscriber(
            email=address,
            email_key=address.lower(),
            name=name,
            status=status,
            consent_source="cli",
            confirmed_at=datetime.now(UTC) if status == "confirmed" else None,
        )
        session.add(sub)
    return sub


def make_dkim_key(folder: Path, bits: int = 2048) -> tuple[Path, bytes]:
    """A PEM private key file and the DNS TXT record text for its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    path = folder / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    import base64

    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def dkim_verify(
    data: bytes, record: bytes, *, selector: str = "s1", domain: str = "example.org"
) -> bool:
    """Verify with dkimpy, an implementation independent of Slice's signer."""
    wanted = f"{selector}._domainkey.{domain}.".encode()

    def dnsfunc(name: bytes | str, timeout: int = 5) -> bytes | None:
        name_b = name.encode() if isinstance(name, str) else name
        return record if name_b.rstrip(b".") + b"." == wanted else None

    return bool(dkim.verify(data, dnsfunc=dnsfunc))


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)
