"""The portal's own e-mails (user invitations) through the configured SMTP server
(`mail:` in the collector config), written in the partner's brand."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from collector.brand import Brand
from collector.config import MailConfig
from collector.errors import CollectorError


class MailError(CollectorError):
    status = 502


def invitation_text(brand: Brand, link: str, role_label: str) -> tuple[str, str]:
    """(subject, body) of an invitation: the brand's name, never the product's."""
    subject = f"Your {brand.name} support portal account"
    lines = [
        f"You have been invited to the {brand.name} support portal as {role_label}.",
        "",
        "Set your password and log in here (the link works once and expires in 3 days):",
        link,
    ]
    if brand.support_contact:
        lines += ["", f"Questions: {brand.support_contact}"]
    return subject, "\n".join(lines) + "\n"


def send(cfg: MailConfig, to: str, subject: str, body: str) -> None:
    msg = EmailMessage()
    msg["From"] = cfg.sender
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body)
    try:
        with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s) as smtp:
            if cfg.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if cfg.username:
                smtp.login(cfg.username, cfg.password or "")
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"the invitation e-mail could not be sent: {exc}") from None
