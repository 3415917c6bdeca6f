"""Accounts, role grants, sessions and login (OWASP ASVS level 2, V6/V7).

Passwords are Argon2id hashes; session tokens are 256-bit random strings of
which only the SHA-256 is stored; staff roles need a TOTP code at login; failed
logins are rate-limited per username and client; :meth:`GovernanceStore.principal`
re-reads the grants on every call so a revocation takes effect on the next request.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from edsight.config import Settings
from edsight.errors import InvalidInput, NotAuthorized
from edsight.governance import _db
from edsight.governance._passwords import check_password

log = logging.getLogger(__name__)

ROLES = ("teacher", "counselor", "principal", "district_admin", "state_analyst", "researcher", "parent")
STAFF_ROLES = tuple(r for r in ROLES if r != "parent")
# Roles whose grant names a warehouse id; the others take no target.
TARGET_ROLES = frozenset({"teacher", "principal", "district_admin", "parent"})

INVALID_CREDENTIALS = "invalid credentials"
TOO_MANY_ATTEMPTS = "too many attempts; try again later"
MFA_REQUIRED = "MFA code required"
SESSION_EXPIRED = "session expired"

# Per username alone and per client alone, this many times the per-pair limit.
_SINGLE_KEY_FACTOR = 4


@dataclass(frozen=True)
class Grant:
    """One role of an account, on one target (see :data:`TARGET_ROLES`)."""

    role: str
    target: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidInput(f"unknown role {self.role!r}; expected one of {', '.join(ROLES)}")
        if self.role in TARGET_ROLES and not self.target:
            raise InvalidInput(f"role {self.role} needs a target id")
        if self.role not in TARGET_ROLES and self.target:
            raise InvalidInput(f"role {self.role} takes no target")

    def __str__(self) -> str:
        return self.role if self.target is None else f"{self.role}:{self.target}"

    @classmethod
    def parse(cls, text: str) -> Grant:
        """``role`` or ``role:target`` (the CLI form)."""
        role, _, target = text.partition(":")
        return cls(role.strip(), target.strip() or None)


@dataclass(frozen=True)
class Principal:
    """Who is asking: the account, its current grants, and whether the session passed MFA."""

    account_id: str
    username: str
    grants: frozenset[Grant]
    mfa: bool

    def roles(self) -> frozenset[str]:
        return frozenset(g.role for g in self.grants)

    def targets(self, role: str) -> frozenset[str]:
        """The targets of this principal's grants of ``role``."""
        return frozenset(g.target for g in self.grants if g.role == role and g.target is not None)


def _now_iso(clock: Callable[[], float]) -> str:
    return datetime.fromtimestamp(clock(), UTC).isoformat()


def token_hash(token: str) -> str:
    """What the session table keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


class GovernanceStore:
    """The governance SQLite file of one data home.

    ``clock`` returns POSIX seconds; tests pass a fake one to move time without sleeping.
    """

    def __init__(self, settings: Settings, *, clock: Callable[[], float] | None = None) -> None:
        self.settings = settings
        self.clock: Callable[[], float] = clock or time.time
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_kib, parallelism=1
        )
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        _db.open_store_db(settings).close()  # create the schema once
        # Verified against when the username is unknown, so both paths cost the same.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))

    @property
    def connection(self) -> sqlite3.Connection:
        """This thread's SQLite connection (the audit log and ledgers share it)."""
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = _db.connect(self.settings.governance_path)
            self._local.con = con
            with self._lock:
                self._all.append(con)
        return con

    _con = connection

    def close(self) -> None:
        """Close every connection this store opened (in any thread)."""
        with self._lock:
            for con in self._all:
                con.close()
            self._all.clear()
        self._local = threading.local()

    # -- accounts ----------------------------------------------------------------

    def create_account(
        self,
        username: str,
        password: str,
        grants: Iterable[Grant],
        *,
        totp_secret: str | None = None,
    ) -> str:
        """A new account; staff accounts get a TOTP secret (generated when none is given)."""
        username = username.strip()
        if not username or len(username) > 128 or any(c.isspace() for c in username):
            raise InvalidInput("username: 1-128 characters without spaces")
        check_password(username, password)
        grants = list(grants)
        if totp_secret is None and any(g.role in STAFF_ROLES for g in grants):
            totp_secret = pyotp.random_base32()
        if totp_secret is not None:
            _check_totp_secret(totp_secret)
        account_id = uuid.uuid4().hex
        with _db.transaction(self._con) as con:
            if con.execute("SELECT 1 FROM account WHERE username = ?", [username]).fetchone():
                raise InvalidInput(f"username {username!r} is taken")
            con.execute(
                "INSERT INTO account (account_id, username, password_hash, totp_secret, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [account_id, username, self._hasher.hash(password), totp_secret, _now_iso(self.clock)],
            )
            for grant in grants:
                self._insert_grant(con, account_id, grant)
        log.info("created account %s with roles %s", account_id, sorted({g.role for g in grants}))
        return account_id

    def account_id(self, username: str) -> str:
        row = self._con.execute("SELECT account_id FROM account WHERE username = ?", [username]).fetchone()
        if row is None:
            raise InvalidInput(f"no account named {username!r}")
        return str(row[0])

    def accounts(self) -> list[dict[str, object]]:
        """Every account with its grants (no secrets)."""
        rows = self._con.execute(
            "SELECT account_id, username, disabled, totp_secret IS NOT NULL, created_at "
            "FROM account ORDER BY username"
        ).fetchall()
        out: list[dict[str, object]] = []
        for account_id, username, disabled, has_totp, created in rows:
            grants = sorted(str(g) for g in self.grants(account_id))
            out.append(
                {
                    "account_id": account_id,
                    "username": username,
                    "disabled": bool(disabled),
                    "mfa_enrolled": bool(has_totp),
                    "created_at": created,
                    "grants": grants,
                }
            )
        return out

    def totp_provisioning_uri(self, account_id: str, issuer: str = "edsight") -> str | None:
        """The ``otpauth://`` URI to enrol an authenticator app (None: no TOTP secret)."""
        row = self._con.execute(
            "SELECT username, totp_secret FROM account WHERE account_id = ?", [account_id]
        ).fetchone()
        if row is None:
            raise InvalidInput(f"no account {account_id}")
        if row[1] is None:
            return None
        return pyotp.TOTP(row[1]).provisioning_uri(name=row[0], issuer_name=issuer)

    def grants(self, account_id: str) -> frozenset[Grant]:
        rows = self._con.execute(
            "SELECT role, target FROM account_grant WHERE account_id = ?", [account_id]
        ).fetchall()
        return frozenset(Grant(role, target or None) for role, target in rows)

    def add_grant(self, account_id: str, grant: Grant) -> None:
        with _db.transaction(self._con) as con:
            self._require_account(con, account_id)
            self._insert_grant(con, account_id, grant)
            if grant.role in STAFF_ROLES:
                con.execute(
                    "UPDATE account SET totp_secret = ? WHERE account_id = ? AND totp_secret IS NULL",
                    [pyotp.random_base32(), account_id],
                )

    def revoke_grant(self, account_id: str, grant: Grant) -> None:
        """Remove a grant; the account's sessions lose it on their next request."""
        with _db.transaction(self._con) as con:
            self._require_account(con, account_id)
            con.execute(
                "DELETE FROM account_grant WHERE account_id = ? AND role = ? AND target = ?",
                [account_id, grant.role, grant.target or ""],
            )
            if grant.role == "counselor":
                con.execute("DELETE FROM caseload WHERE account_id = ?", [account_id])

    def disable_account(self, account_id: str) -> None:
        """Disable an account and end all its sessions."""
        with _db.transaction(self._con) as con:
            self._require_account(con, account_id)
            con.execute("UPDATE account SET disabled = 1 WHERE account_id = ?", [account_id])
            con.execute("DELETE FROM session WHERE account_id = ?", [account_id])

    def set_caseload(self, counselor_account_id: str, person_ids: Iterable[str]) -> None:
        """Replace a counselor's caseload (the students that counselor may see)."""
        ids = sorted({str(p) for p in person_ids})
        with _db.transaction(self._con) as con:
            self._require_account(con, counselor_account_id)
            con.execute("DELETE FROM caseload WHERE account_id = ?", [counselor_account_id])
            con.executemany(
                "INSERT INTO caseload (account_id, person_id) VALUES (?, ?)",
                [(counselor_account_id, p) for p in ids],
            )

    def caseload(self, counselor_account_id: str) -> set[str]:
        rows = self._con.execute(
            "SELECT person_id FROM caseload WHERE account_id = ?", [counselor_account_id]
        ).fetchall()
        return {r[0] for r in rows}

    # -- directory information -----------------------------------------------------

    def set_directory_optout(self, person_id: str, opted_out: bool) -> None:
        """Record (or withdraw) a student's opt-out of directory information (FERPA 99.37)."""
        with _db.transaction(self._con) as con:
            if opted_out:
                con.execute(
                    "INSERT OR IGNORE INTO directory_optout (person_id, since) VALUES (?, ?)",
                    [person_id, _now_iso(self.clock)],
                )
            else:
                con.execute("DELETE FROM directory_optout WHERE person_id = ?", [person_id])

    def directory_optouts(self) -> set[str]:
        return {r[0] for r in self._con.execute("SELECT person_id FROM directory_optout").fetchall()}

    # -- login and sessions ----------------------------------------------------------

    def login(self, username: str, password: str, *, totp: str | None, client: str) -> str:
        """Check credentials (and TOTP for staff); return a new session token."""
        now = self.clock()
        self._check_rate(username, client, now)
        row = self._con.execute(
            "SELECT account_id, password_hash, totp_secret, totp_last_counter, disabled "
            "FROM account WHERE username = ?",
            [username],
        ).fetchone()
        if row is None:
            self._verify(self._dummy_hash, password)
            self._fail(username, client, now)
            raise NotAuthorized(INVALID_CREDENTIALS)
        account_id, stored, totp_secret, last_counter, disabled = row
        if not self._verify(stored, password) or disabled:
            self._fail(username, client, now)
            raise NotAuthorized(INVALID_CREDENTIALS)
        grants = self.grants(account_id)
        mfa = False
        if totp_secret is not None and totp:
            counter = _totp_counter(totp_secret, totp, now)
            if counter is not None and (last_counter is None or counter > last_counter):
                mfa = True
                self._con.execute(
                    "UPDATE account SET totp_last_counter = ? WHERE account_id = ?", [counter, account_id]
                )
        if any(g.role in STAFF_ROLES for g in grants) and not mfa:
            self._fail(username, client, now)
            raise NotAuthorized(MFA_REQUIRED)
        if self._hasher.check_needs_rehash(stored):
            self._con.execute(
                "UPDATE account SET password_hash = ? WHERE account_id = ?",
                [self._hasher.hash(password), account_id],
            )
        token = secrets.token_urlsafe(32)
        with _db.transaction(self._con) as con:
            con.execute("DELETE FROM login_failure WHERE username = ? AND client = ?", [username, client])
            con.execute(
                "INSERT INTO session (token_hash, account_id, created_at, last_seen, mfa) "
                "VALUES (?, ?, ?, ?, ?)",
                [token_hash(token), account_id, now, now, int(mfa)],
            )
        return token

    def principal(self, token: str) -> Principal:
        """The principal of a live session; grants are read afresh on every call."""
        now = self.clock()
        row = self._con.execute(
            "SELECT s.account_id, a.username, s.created_at, s.last_seen, s.mfa, a.disabled "
            "FROM session s JOIN account a USING (account_id) WHERE s.token_hash = ?",
            [token_hash(token)],
        ).fetchone()
        if row is None:
            raise NotAuthorized(SESSION_EXPIRED)
        account_id, username, created, last_seen, mfa, disabled = row
        idle = now - last_seen > self.settings.session_idle_timeout_s
        absolute = now - created > self.settings.session_absolute_timeout_s
        if disabled or idle or absolute:
            self._con.execute("DELETE FROM session WHERE token_hash = ?", [token_hash(token)])
            raise NotAuthorized(SESSION_EXPIRED)
        self._con.execute("UPDATE session SET last_seen = ? WHERE token_hash = ?", [now, token_hash(token)])
        return Principal(account_id, username, self.grants(account_id), bool(mfa))

    def logout(self, token: str) -> None:
        self._con.execute("DELETE FROM session WHERE token_hash = ?", [token_hash(token)])

    def sessions(self, account_id: str) -> int:
        """How many sessions the account holds."""
        row = self._con.execute("SELECT count(*) FROM session WHERE account_id = ?", [account_id]).fetchone()
        return int(row[0])

    # -- internals -------------------------------------------------------------------

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(stored, password))
        except (VerificationError, InvalidHashError):
            return False

    def _check_rate(self, username: str, client: str, now: float) -> None:
        since = now - self.settings.login_attempts_window_s
        limit = self.settings.login_attempts_limit
        con = self._con
        pair, by_user, by_client = (
            con.execute(sql, args).fetchone()[0]
            for sql, args in (
                (
                    "SELECT count(*) FROM login_failure WHERE username = ? AND client = ? AND at > ?",
                    [username, client, since],
                ),
                ("SELECT count(*) FROM login_failure WHERE username = ? AND at > ?", [username, since]),
                ("SELECT count(*) FROM login_failure WHERE client = ? AND at > ?", [client, since]),
            )
        )
        if pair >= limit or by_user >= limit * _SINGLE_KEY_FACTOR or by_client >= limit * _SINGLE_KEY_FACTOR:
            log.warning("login rate limit reached")
            raise NotAuthorized(TOO_MANY_ATTEMPTS)

    def _fail(self, username: str, client: str, now: float) -> None:
        with _db.transaction(self._con) as con:
            con.execute("INSERT INTO login_failure VALUES (?, ?, ?)", [username, client, now])
            con.execute(
                "DELETE FROM login_failure WHERE at < ?", [now - self.settings.login_attempts_window_s]
            )

    @staticmethod
    def _require_account(con: sqlite3.Connection, account_id: str) -> None:
        if con.execute("SELECT 1 FROM account WHERE account_id = ?", [account_id]).fetchone() is None:
            raise InvalidInput(f"no account {account_id}")

    def _insert_grant(self, con: sqlite3.Connection, account_id: str, grant: Grant) -> None:
        con.execute(
            "INSERT OR IGNORE INTO account_grant (account_id, role, target, granted_at) VALUES (?, ?, ?, ?)",
            [account_id, grant.role, grant.target or "", _now_iso(self.clock)],
        )


def _check_totp_secret(secret: str) -> None:
    try:
        pyotp.TOTP(secret).at(0)
    except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError
        raise InvalidInput("totp secret: expected base32 text") from exc
    if len(secret.rstrip("=")) < 26:  # 26 base32 chars = 130 bits
        raise InvalidInput("totp secret: at least 128 bits (26 base32 characters)")


def _totp_counter(secret: str, code: str, now: float) -> int | None:
    """The time step ``code`` is valid for (this one or one either side), else None."""
    totp = pyotp.TOTP(secret)
    step = int(now // totp.interval)
    for counter in (step, step - 1, step + 1):
        if secrets.compare_digest(totp.generate_otp(counter), code.strip()):
            return counter
    return None
