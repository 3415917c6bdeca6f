"""The audit key and keys derived from it (anchor MAC, audit pseudonyms)."""

from __future__ import annotations

import hashlib
import hmac

from edsight.config import Settings
from edsight.governance._db import secret_key


def audit_key(settings: Settings) -> bytes:
    """``EDSIGHT_AUDIT_KEY`` (hex, or any text of 16+ bytes), else ``HOME/secrets/audit.key``."""
    if settings.audit_key is not None:
        text = settings.audit_key.get_secret_value()
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = text.encode()
        if len(key) < 16:
            from edsight.errors import InvalidInput

            raise InvalidInput("EDSIGHT_AUDIT_KEY: at least 16 bytes (32 hex digits) expected")
        return key
    return secret_key(settings, "audit")


def derive(key: bytes, purpose: str) -> bytes:
    """A subkey for one purpose, so one use of the key never reveals another's MAC."""
    return hmac.new(key, b"edsight:" + purpose.encode(), hashlib.sha256).digest()


def pseudonym(key: bytes, person_id: str, prefix: str = "ps_") -> str:
    """A keyed HMAC-SHA256 pseudonym of a person id (128 bits shown)."""
    return prefix + hmac.new(key, person_id.encode(), hashlib.sha256).hexdigest()[:32]
