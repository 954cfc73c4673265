"""Deliveries of a produced report: files in a directory (written whole, then renamed), a webhook (JSON POST with a
timeout and retries) and e-mail (SMTP, STARTTLS optional, credentials from the environment), each retried."""

from __future__ import annotations

import base64
import json
import os
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from .config import Email, ReportConfig, Webhook
from .render import MEDIA_TYPES, dollars

Files = Mapping[str, bytes]  # file name -> content
Log = Callable[[str], None]


class DeliveryError(Exception):
    """A delivery that failed every attempt; the message says where and why."""


def retried(what: str, attempts: int, send: Callable[[], None], log: Log, backoff_s: float = 1.0) -> None:
    """Calls `send` up to `attempts` times, waiting `backoff_s`, then twice as long, between tries; logs each
    failure. Raises DeliveryError after the last."""
    for attempt in range(1, attempts + 1):
        try:
            send()
            return
        except (OSError, smtplib.SMTPException, DeliveryError) as error:
            log(f"{what}: attempt {attempt} of {attempts} failed: {error}")
            if attempt == attempts:
                raise DeliveryError(f"{what}: {error}") from error
            time.sleep(backoff_s * 2 ** (attempt - 1))


def to_directory(directory: str, files: Files) -> None:
    """Writes each file into `directory` (created if missing), whole: a partial file is never seen."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        partial = target / f".{name}.partial"
        partial.write_bytes(content)
        os.replace(partial, target / name)


def _media_type(name: str) -> str:
    return MEDIA_TYPES[name.rpartition(".")[2]]


def to_webhook(hook: Webhook, report: str, body: dict[str, Any], files: Files) -> None:
    """POSTs `{"report", "statement", "files": [{name, media_type, content_base64}]}` as JSON; a status other than
    2xx, a timeout or a refused connection is a failure."""
    payload = {
        "report": report,
        "statement": body,
        "files": [
            {"name": n, "media_type": _media_type(n), "content_base64": base64.b64encode(c).decode()}
            for n, c in files.items()
        ],
    }
    request = urllib.request.Request(
        hook.url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "llmtally", **hook.headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=hook.timeout_seconds) as answer:
            status = answer.status
    except urllib.error.HTTPError as error:
        raise DeliveryError(f"HTTP {error.code} from {hook.url}") from None
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status} from {hook.url}")


def to_email(mail: Email, subject: str, text: str, files: Files, environ: Mapping[str, str] | None = None) -> None:
    """Sends one message with the files attached; logs in with the credentials named by username_env and
    password_env when set (after STARTTLS when asked for)."""
    env = os.environ if environ is None else environ
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = mail.sender
    message["To"] = ", ".join(mail.to)
    message.set_content(text)
    for name, content in files.items():
        main, _, sub = _media_type(name).partition(";")[0].partition("/")
        message.add_attachment(content, maintype=main, subtype=sub, filename=name)
    with smtplib.SMTP(mail.host, mail.port, timeout=mail.timeout_seconds) as smtp:
        if mail.starttls:
            smtp.starttls(context=ssl.create_default_context(cafile=mail.ca_file))
        if mail.username_env and mail.password_env:
            user, password = env.get(mail.username_env), env.get(mail.password_env)
            if not user or not password:
                raise DeliveryError(f"${mail.username_env} and ${mail.password_env} must hold the SMTP credentials")
            smtp.login(user, password)
        smtp.send_message(message)


def deliver(
    report: ReportConfig, target: str, body: dict[str, Any], files: Files, log: Log, backoff_s: float = 1.0
) -> None:
    """Delivers to one of the report's targets (directory, webhook, email), retried. Raises DeliveryError."""
    where = f"report {report.name} ({body['period']['name']}) to {target}"
    if target == "directory":
        assert report.directory is not None
        directory = report.directory
        retried(where, 3, lambda: to_directory(directory, files), log, backoff_s)
    elif target == "webhook":
        assert report.webhook is not None
        hook = report.webhook
        retried(where, hook.retries + 1, lambda: to_webhook(hook, report.name, body, files), log, backoff_s)
    else:
        assert report.email is not None
        mail = report.email
        totals = body["totals"]
        subject = f"{body['title']}: {body['period']['name']}"
        text = (
            f"{subject} ({body['period']['start']} to {body['period']['end']})\n"
            f"requests {totals['requests']}, provider cost ${dollars(totals['provider_cost_nusd'])}, markup "
            f"${dollars(totals['markup_nusd'])}, fee ${dollars(totals['fee_nusd'])}, customer cost "
            f"${dollars(totals['customer_cost_nusd'])}\n"
            + (f"{body['comparison']['message']}\n" if body.get("comparison") else "")
            + f"Attached: {', '.join(files)}\n"
        )
        retried(where, mail.retries + 1, lambda: to_email(mail, subject, text, files), log, backoff_s)
