"""Optional district single sign-on: verify OpenID Connect ID tokens, map claims to grants.

The ID token's signature is checked against the identity provider's JWKS (a file,
or fetched once from a URL by :func:`load_jwks`), together with issuer, audience,
expiry and (when given) nonce. Roles come from one claim through an explicit map;
a role that needs a target takes it from a configured claim.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edsight.errors import InvalidInput, NotAuthorized
from edsight.governance.identity import ROLES, TARGET_ROLES, Grant

INVALID_TOKEN = "invalid id token"


class OIDCConfig(BaseModel):
    """How edsight trusts a district identity provider."""

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(description="Expected `iss` claim, e.g. https://sso.district.example")
    client_id: str = Field(description="edsight's client id at the provider.")
    audience: str | None = Field(default=None, description="Expected `aud` (default: client_id).")
    jwks_file: Path | None = Field(default=None, description="JWKS JSON file of the provider's keys.")
    jwks_url: str | None = Field(default=None, description="JWKS URL (https), fetched by load_jwks.")
    algorithms: list[str] = Field(default_factory=lambda: ["RS256"])
    role_claim: str = Field(default="roles", description="Claim holding the provider's role names.")
    role_map: dict[str, str] = Field(default_factory=dict, description="Provider role name -> edsight role.")
    target_claims: dict[str, str] = Field(
        default_factory=dict,
        description="edsight role -> claim holding its target (e.g. principal -> school_id).",
    )
    leeway_s: int = Field(default=60, ge=0, le=300)

    @model_validator(mode="after")
    def _check(self) -> OIDCConfig:
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError("give exactly one of jwks_file and jwks_url")
        if self.jwks_url is not None and not self.jwks_url.startswith("https://"):
            raise ValueError("jwks_url must be https")
        for role in (*self.role_map.values(), *self.target_claims):
            if role not in ROLES:
                raise ValueError(f"unknown edsight role {role!r}")
        if any(a.lower() == "none" or a.startswith("HS") for a in self.algorithms):
            raise ValueError("only asymmetric signature algorithms are accepted")
        return self


def load_jwks(config: OIDCConfig) -> dict[str, Any]:
    """The provider's key set, from the file or (one request) from the URL."""
    if config.jwks_file is not None:
        try:
            data: dict[str, Any] = json.loads(config.jwks_file.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"{config.jwks_file}: not a readable JWKS file ({exc})") from exc
        return data
    import httpx

    assert config.jwks_url is not None
    response = httpx.get(config.jwks_url, timeout=10.0)
    response.raise_for_status()
    fetched: dict[str, Any] = response.json()
    return fetched


def verify_id_token(
    token: str, config: OIDCConfig, jwks: dict[str, Any], *, nonce: str | None = None
) -> dict[str, Any]:
    """The claims of a valid ID token; :class:`NotAuthorized` for anything else."""
    try:
        header = jwt.get_unverified_header(token)
        keys = jwt.PyJWKSet.from_dict(jwks)
        kid = header.get("kid")
        matching = [k for k in keys.keys if kid is None or k.key_id == kid]
        if not matching:
            raise NotAuthorized(INVALID_TOKEN)
        claims: dict[str, Any] = jwt.decode(
            token,
            matching[0].key,
            algorithms=config.algorithms,
            audience=config.audience or config.client_id,
            issuer=config.issuer,
            leeway=config.leeway_s,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except (jwt.PyJWTError, ValueError, KeyError) as exc:
        raise NotAuthorized(INVALID_TOKEN) from exc
    if nonce is not None and claims.get("nonce") != nonce:
        raise NotAuthorized(INVALID_TOKEN)
    return claims


def grants_from_claims(claims: dict[str, Any], config: OIDCConfig) -> frozenset[Grant]:
    """edsight grants for verified claims; provider roles missing from the map give none."""
    raw = claims.get(config.role_claim, [])
    names = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list) else []
    grants: set[Grant] = set()
    for name in names:
        role = config.role_map.get(str(name))
        if role is None:
            continue
        target: str | None = None
        if role in TARGET_ROLES:
            claim = config.target_claims.get(role)
            value = claims.get(claim) if claim else None
            if not value:
                continue  # a targeted role without its target grants nothing
            target = str(value)
        grants.add(Grant(role, target))
    return frozenset(grants)


__all__ = ["INVALID_TOKEN", "OIDCConfig", "grants_from_claims", "load_jwks", "verify_id_token"]
