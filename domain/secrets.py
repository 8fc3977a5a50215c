"""Keys kept outside the database, for what a database dump must not give away:
enrollment codes (HMAC, not a bare hash a GPU can search) and strangers' Telegram ids
in the audit. Derived from the bot token, which never enters the database: codes live
14 days, so a new token only invalidates the codes still open."""

from __future__ import annotations

import hashlib
import hmac

ENROLLMENT_CODES = "enrollment-codes"
AUDIT_STRANGERS = "audit-strangers"


def derive_key(token: str, purpose: str) -> bytes:
    """One key per purpose (HMAC-SHA256 of the purpose under the token)."""
    return hmac.new(token.encode(), f"ssc-trial-bot/{purpose}".encode(), hashlib.sha256).digest()


def keyed_hash(key: bytes, value: str) -> str:
    """HMAC-SHA256 of `value` under `key`, hex."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
