"""Logging that never carries the bot token or personal data.

httpx would log every request URL, and the URL contains the token: its logger
is kept at WARNING, and a filter masks the token wherever it might still appear.
Handlers log ids and outcomes, never names, phone numbers or free text."""

from __future__ import annotations

import logging
from typing import TextIO

# Loggers that would print request URLs (with the token) or whole updates (with
# names and free text) below these levels, whatever level the root is set to.
CAPPED = {
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "telegram": logging.INFO,
    "apscheduler": logging.INFO,
    "aiosqlite": logging.WARNING,
    "asyncio": logging.WARNING,
}


class RedactFilter(logging.Filter):
    """Replace each secret by `***` in the final message text."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self._secrets):
            for secret in self._secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


def mask(text: str, secrets: list[str]) -> str:
    """`text` with every secret (and its URL-encoded form) replaced by `***`."""
    from urllib.parse import quote

    for secret in secrets:
        if secret:
            text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return text


class RedactingFormatter(logging.Formatter):
    """Masks the secrets in the whole formatted record, the traceback included (the
    filter sees only the message; an exception's text may quote a URL with the token)."""

    def __init__(self, fmt: str, secrets: list[str]) -> None:
        super().__init__(fmt)
        self._secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record), self._secrets)


def setup_logging(secrets: list[str], level: int = logging.INFO, stream: TextIO | None = None) -> logging.Handler:
    """Configure the root logger once, with the redaction filter on its handler,
    and cap the loggers that would otherwise leak. Returns the handler."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets))
    handler.addFilter(RedactFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name, floor in CAPPED.items():
        logging.getLogger(name).setLevel(max(floor, level))
    return handler
