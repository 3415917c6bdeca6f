"""Governance: identity, role scopes, audit, small-cell suppression, de-identification, retention.

See docs/governance.md. State lives in ``HOME/governance.sqlite3``; the audit anchor in
``HOME/audit.anchor``; keys under ``HOME/secrets`` (or ``EDSIGHT_AUDIT_KEY``).
"""

from __future__ import annotations

from edsight.governance.audit import AuditEvent, AuditLog, AuditProblem, AuditVerification, DisclosureLedger
from edsight.governance.deidentify import (
    drop_opted_out,
    new_release_key,
    release_extract,
    research_extract,
    roster_export,
)
from edsight.governance.identity import ROLES, STAFF_ROLES, GovernanceStore, Grant, Principal
from edsight.governance.oidc import OIDCConfig, grants_from_claims, verify_id_token
from edsight.governance.retention import delete_student
from edsight.governance.scopes import (
    ACTIONS,
    ROLE_ACTIONS,
    allowed,
    can_view_student,
    redact_identifiers,
    school_scope,
    scoped_students,
    section_scope_sql,
    student_scope_sql,
)
from edsight.governance.suppression import suppress_table

__all__ = [
    "ACTIONS",
    "ROLES",
    "ROLE_ACTIONS",
    "STAFF_ROLES",
    "AuditEvent",
    "AuditLog",
    "AuditProblem",
    "AuditVerification",
    "DisclosureLedger",
    "GovernanceStore",
    "Grant",
    "OIDCConfig",
    "Principal",
    "allowed",
    "can_view_student",
    "delete_student",
    "drop_opted_out",
    "grants_from_claims",
    "new_release_key",
    "redact_identifiers",
    "release_extract",
    "research_extract",
    "roster_export",
    "school_scope",
    "scoped_students",
    "section_scope_sql",
    "student_scope_sql",
    "suppress_table",
    "verify_id_token",
]
