"""Accounts, login, sessions, MFA, rate limiting, revocation (GOVERNANCE.md rows 4 and 19)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import jwt
import pyotp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from edsight.config import Settings
from edsight.errors import InvalidInput, NotAuthorized
from edsight.governance._passwords import HAS_USERNAME, TOO_COMMON, TOO_SHORT
from edsight.governance.identity import (
    INVALID_CREDENTIALS,
    MFA_REQUIRED,
    SESSION_EXPIRED,
    TOO_MANY_ATTEMPTS,
    GovernanceStore,
    Grant,
)
from edsight.governance.oidc import OIDCConfig, grants_from_claims, verify_id_token

PASSWORD = "correct-Horse-battery-9"
SECRET = pyotp.random_base32()


def _teacher(store: GovernanceStore, name: str = "tina") -> str:
    return store.create_account(name, PASSWORD, [Grant("teacher", "t1")], totp_secret=SECRET)


def _code(clock: Any) -> str:
    return pyotp.TOTP(SECRET).at(clock())


@pytest.mark.parametrize(
    ("password", "message"),
    [("short-pw-1", TOO_SHORT), ("xx-tina-xx-1234", HAS_USERNAME), ("Password123456", TOO_COMMON)],
)
def test_password_rules(store: GovernanceStore, password: str, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        store.create_account("tina", password, [Grant("parent", "p1")])
    assert str(err.value) == message


def test_passwords_are_argon2id_and_tokens_are_stored_hashed(store: GovernanceStore, clock: Any) -> None:
    _teacher(store)
    token = store.login("tina", PASSWORD, totp=_code(clock), client="10.0.0.1")
    assert len(token) >= 43  # 32 random bytes, url-safe base64: 256 bits
    con = sqlite3.connect(store.settings.governance_path)
    (stored,) = con.execute("SELECT password_hash FROM account").fetchone()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    hashes = [r[0] for r in con.execute("SELECT token_hash FROM session")]
    assert token not in hashes
    assert len(hashes) == 1
    con.close()
    raw = (
        store.settings.governance_path.read_bytes()
        + store.settings.governance_path.with_name("governance.sqlite3-wal").read_bytes()
    )
    assert token.encode() not in raw


def test_staff_need_mfa_and_codes_do_not_replay(store: GovernanceStore, clock: Any) -> None:
    _teacher(store)
    with pytest.raises(NotAuthorized) as err:
        store.login("tina", PASSWORD, totp=None, client="c")
    assert str(err.value) == MFA_REQUIRED
    with pytest.raises(NotAuthorized, match=MFA_REQUIRED):
        store.login("tina", PASSWORD, totp="000000" if _code(clock) != "000000" else "111111", client="c")
    code = _code(clock)
    token = store.login("tina", PASSWORD, totp=code, client="c")
    assert store.principal(token).mfa
    with pytest.raises(NotAuthorized, match=MFA_REQUIRED):  # the same code twice
        store.login("tina", PASSWORD, totp=code, client="c")
    clock.advance(30)
    assert store.login("tina", PASSWORD, totp=_code(clock), client="c")


def test_parent_logs_in_without_mfa_and_staff_get_a_secret(store: GovernanceStore) -> None:
    parent = store.create_account("pat", PASSWORD, [Grant("parent", "p1")])
    assert store.totp_provisioning_uri(parent) is None
    assert store.principal(store.login("pat", PASSWORD, totp=None, client="c")).roles() == {"parent"}
    counselor = store.create_account("cora", PASSWORD, [Grant("counselor")])
    uri = store.totp_provisioning_uri(counselor)
    assert uri is not None
    assert uri.startswith("otpauth://totp/")


def test_unknown_user_and_wrong_password_look_the_same(store: GovernanceStore) -> None:
    store.create_account("pat", PASSWORD, [Grant("parent", "p1")])
    messages = set()
    for user, password in (("nobody", PASSWORD), ("pat", PASSWORD + "x")):
        with pytest.raises(NotAuthorized) as err:
            store.login(user, password, totp=None, client="c")
        messages.add(str(err.value))
    assert messages == {INVALID_CREDENTIALS}


def test_login_is_rate_limited_per_user_and_client(store: GovernanceStore, clock: Any) -> None:
    store.create_account("pat", PASSWORD, [Grant("parent", "p1")])
    limit = store.settings.login_attempts_limit
    for _ in range(limit):
        with pytest.raises(NotAuthorized, match=INVALID_CREDENTIALS):
            store.login("pat", "wrong-password-123", totp=None, client="evil")
    with pytest.raises(NotAuthorized) as err:  # even the right password is refused now
        store.login("pat", PASSWORD, totp=None, client="evil")
    assert str(err.value) == TOO_MANY_ATTEMPTS
    assert store.login("pat", PASSWORD, totp=None, client="home")  # another client is not locked
    # One client spraying many usernames hits the per-client limit.
    for i in range(limit * 4 - limit):
        with pytest.raises(NotAuthorized):
            store.login(f"user{i}", "wrong-password-123", totp=None, client="evil")
    with pytest.raises(NotAuthorized, match=TOO_MANY_ATTEMPTS):
        store.login("someone-else", PASSWORD, totp=None, client="evil")
    clock.advance(store.settings.login_attempts_window_s + 1)
    assert store.login("pat", PASSWORD, totp=None, client="evil")


def test_idle_and_absolute_timeouts(gov_settings: Settings, clock: Any) -> None:
    settings = gov_settings.model_copy(
        update={"session_idle_timeout_s": 600, "session_absolute_timeout_s": 3600}
    )
    store = GovernanceStore(settings, clock=clock)
    store.create_account("pat", PASSWORD, [Grant("parent", "p1")])
    idle = store.login("pat", PASSWORD, totp=None, client="c")
    clock.advance(601)
    with pytest.raises(NotAuthorized, match=SESSION_EXPIRED):
        store.principal(idle)
    with pytest.raises(NotAuthorized, match=SESSION_EXPIRED):  # and it stays dead
        store.principal(idle)
    busy = store.login("pat", PASSWORD, totp=None, client="c")
    for _ in range(6):  # active every 10 minutes: the idle timer never fires
        clock.advance(599)
        store.principal(busy)
    clock.advance(599)
    with pytest.raises(NotAuthorized, match=SESSION_EXPIRED):  # 3594 + 599 s > 1 h absolute
        store.principal(busy)
    store.close()


def test_revocation_applies_on_the_next_request(store: GovernanceStore, clock: Any) -> None:
    account = _teacher(store)
    store.add_grant(account, Grant("principal", "s1"))
    token = store.login("tina", PASSWORD, totp=_code(clock), client="c")
    assert store.principal(token).roles() == {"teacher", "principal"}
    store.revoke_grant(account, Grant("principal", "s1"))
    assert store.principal(token).grants == frozenset({Grant("teacher", "t1")})
    store.disable_account(account)
    assert store.sessions(account) == 0
    with pytest.raises(NotAuthorized, match=SESSION_EXPIRED):
        store.principal(token)
    clock.advance(30)
    with pytest.raises(NotAuthorized, match=INVALID_CREDENTIALS):
        store.login("tina", PASSWORD, totp=_code(clock), client="c")


def test_logout_and_grant_validation(store: GovernanceStore) -> None:
    store.create_account("pat", PASSWORD, [Grant("parent", "p1")])
    token = store.login("pat", PASSWORD, totp=None, client="c")
    store.logout(token)
    with pytest.raises(NotAuthorized):
        store.principal(token)
    with pytest.raises(InvalidInput, match="needs a target"):
        Grant("teacher")
    with pytest.raises(InvalidInput, match="takes no target"):
        Grant("researcher", "x")
    with pytest.raises(InvalidInput, match="unknown role"):
        Grant.parse("janitor")
    assert Grant.parse("principal:s1") == Grant("principal", "s1")
    with pytest.raises(InvalidInput, match="taken"):
        store.create_account("pat", PASSWORD, [])


# -- OIDC ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[Any, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})
    return key, {"keys": [jwk]}


def _config(tmp_path: Any, jwks: dict[str, Any]) -> OIDCConfig:
    import json

    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    return OIDCConfig(
        issuer="https://sso.district.test",
        client_id="edsight",
        jwks_file=path,
        role_map={"Teachers": "teacher", "Principals": "principal", "Analysts": "state_analyst"},
        target_claims={"teacher": "staff_person_id", "principal": "school_id"},
    )


def _token(key: Any, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": "https://sso.district.test",
        "aud": "edsight",
        "sub": "u1",
        "iat": now,
        "exp": now + 300,
        "roles": ["Teachers", "Analysts", "Janitors"],
        "staff_person_id": "t1",
    }
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


def test_oidc_token_verified_and_mapped(tmp_path: Any, rsa_keys: tuple[Any, dict[str, Any]]) -> None:
    from edsight.governance.oidc import load_jwks

    key, jwks = rsa_keys
    config = _config(tmp_path, jwks)
    claims = verify_id_token(_token(key), config, load_jwks(config))
    assert claims["sub"] == "u1"
    assert grants_from_claims(claims, config) == {Grant("teacher", "t1"), Grant("state_analyst")}
    # A principal role without its school claim grants nothing.
    assert grants_from_claims({"roles": "Principals"}, config) == frozenset()


@pytest.mark.parametrize(
    "overrides",
    [{"aud": "someone-else"}, {"iss": "https://evil.test"}, {"exp": int(time.time()) - 3600}],
)
def test_oidc_rejects_bad_claims(
    tmp_path: Any, rsa_keys: tuple[Any, dict[str, Any]], overrides: dict[str, Any]
) -> None:
    key, jwks = rsa_keys
    with pytest.raises(NotAuthorized, match="invalid id token"):
        verify_id_token(_token(key, **overrides), _config(tmp_path, jwks), jwks)


def test_oidc_rejects_foreign_key_and_unsigned(tmp_path: Any, rsa_keys: tuple[Any, dict[str, Any]]) -> None:
    _, jwks = rsa_keys
    config = _config(tmp_path, jwks)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(NotAuthorized):
        verify_id_token(_token(other), config, jwks)
    unsigned = jwt.encode({"sub": "u1"}, None, algorithm="none")
    with pytest.raises(NotAuthorized):
        verify_id_token(unsigned, config, jwks)
    with pytest.raises(NotAuthorized):
        verify_id_token(_token(rsa_keys[0]), config, jwks, nonce="expected-nonce")
    with pytest.raises(ValueError, match="asymmetric"):
        OIDCConfig(issuer="i", client_id="c", jwks_file=config.jwks_file, algorithms=["HS256"])
