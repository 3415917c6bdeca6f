"""``edsight accounts|audit|governance ...``: accounts and grants, audit checks, FERPA operations."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edsight.commands._output import handle_errors
from edsight.commands._shared import HomeOption, JsonOption, open_warehouse

if TYPE_CHECKING:
    from edsight.governance.identity import GovernanceStore

accounts_app = typer.Typer(help="Accounts and role grants of the dashboard.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
governance_app = typer.Typer(
    help="FERPA operations: deletion, de-identified research extracts, directory opt-outs.",
    no_args_is_help=True,
)

RoleArg = Annotated[
    str,
    typer.Argument(
        help="ROLE or ROLE:TARGET, e.g. teacher:<person_id>, principal:<school org_id>, parent:<child id>."
    ),
]


def _store(home: Path | None) -> GovernanceStore:
    from edsight.config import load_settings
    from edsight.governance.identity import GovernanceStore

    return GovernanceStore(load_settings(home))


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


# -- accounts ------------------------------------------------------------------------------


@accounts_app.command("create")
@handle_errors
def accounts_create(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[
        list[str],
        typer.Option("--role", help="ROLE or ROLE:TARGET; repeat for several grants."),
    ],
    password: Annotated[
        str,
        typer.Option(
            "--password",
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="EDSIGHT_NEW_PASSWORD",
            help="Password (prompted when not given; or $EDSIGHT_NEW_PASSWORD).",
        ),
    ],
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an account; staff accounts print the TOTP enrolment URI (shown once)."""
    from edsight.governance.identity import Grant

    store = _store(home)
    account_id = store.create_account(username, password, [Grant.parse(r) for r in role])
    uri = store.totp_provisioning_uri(account_id)
    if as_json:
        typer.echo(json.dumps({"account_id": account_id, "username": username, "totp_uri": uri}))
        return
    typer.echo(f"Created {username} ({account_id})")
    if uri:
        typer.echo(f"Enrol this in an authenticator app (MFA is required for staff): {uri}")


@accounts_app.command("grant")
@handle_errors
def accounts_grant(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: RoleArg,
    home: HomeOption = None,
) -> None:
    """Add a role grant to an account."""
    from edsight.governance.identity import Grant

    store = _store(home)
    store.add_grant(store.account_id(username), Grant.parse(role))
    typer.echo(f"Granted {role} to {username}")


@accounts_app.command("revoke")
@handle_errors
def accounts_revoke(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: RoleArg,
    home: HomeOption = None,
) -> None:
    """Remove a role grant; the account's open sessions lose it on their next request."""
    from edsight.governance.identity import Grant

    store = _store(home)
    store.revoke_grant(store.account_id(username), Grant.parse(role))
    typer.echo(f"Revoked {role} from {username}")


@accounts_app.command("disable")
@handle_errors
def accounts_disable(
    username: Annotated[str, typer.Argument(help="Login name.")],
    home: HomeOption = None,
) -> None:
    """Disable an account and end its sessions."""
    store = _store(home)
    store.disable_account(store.account_id(username))
    typer.echo(f"Disabled {username}; its sessions are closed")


@accounts_app.command("caseload")
@handle_errors
def accounts_caseload(
    username: Annotated[str, typer.Argument(help="Login name of a counselor.")],
    student: Annotated[list[str], typer.Option("--student", help="A person_id; repeat for each.")],
    home: HomeOption = None,
) -> None:
    """Replace a counselor's caseload."""
    store = _store(home)
    store.set_caseload(store.account_id(username), student)
    typer.echo(f"Caseload of {username}: {len(set(student))} students")


@accounts_app.command("list")
@handle_errors
def accounts_list(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """Accounts with their grants (no secrets)."""
    rows = _store(home).accounts()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "disabled" if row["disabled"] else "active"
        grants = ", ".join(str(g) for g in row["grants"]) or "(no grants)"  # type: ignore[attr-defined]
        typer.echo(f"{row['username']:<24} {state:<9} {grants}")


# -- audit ---------------------------------------------------------------------------------


@audit_app.command("verify")
@handle_errors
def audit_verify(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """Check the audit chain and its anchor; exit 1 when tampering is found."""
    from edsight.governance.audit import AuditLog

    result = AuditLog(_store(home)).verify()
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    elif result.ok:
        typer.echo(f"Audit log intact: {result.entries} entries, anchored at seq {result.anchored_seq}")
    else:
        typer.echo(f"Audit log TAMPERED: {len(result.problems)} problem(s) in {result.entries} entries")
        for problem in result.problems:
            typer.echo(f"  {problem}")
    if not result.ok:
        raise typer.Exit(code=1)


# -- governance ----------------------------------------------------------------------------


@governance_app.command("delete")
@handle_errors
def governance_delete(
    student: Annotated[str, typer.Option("--student", help="person_id of the student to delete.")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: the deletion cannot be undone.")] = False,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a student from every table and from the file bytes; log a certificate."""
    from edsight.errors import InvalidInput
    from edsight.governance.retention import delete_student

    if not yes:
        raise InvalidInput("deletion cannot be undone: add --yes to confirm")
    certificate = delete_student(open_warehouse(home), _store(home), student, actor=_actor())
    if as_json:
        typer.echo(json.dumps(certificate, indent=2))
        return
    rows = sum(certificate["warehouse_rows_deleted"].values())
    typer.echo(
        f"Deleted {rows} warehouse rows; certificate {certificate['certificate_id']} "
        f"(audit seq {certificate['audit_seq']})"
    )


@governance_app.command("extract")
@handle_errors
def governance_extract(
    table: Annotated[list[str], typer.Option("--table", help="Warehouse table; repeat for several.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the <table>.parquet files.")],
    party: Annotated[str, typer.Option("--party", help="Who receives the extract.")] = "research partner",
    basis: Annotated[
        str, typer.Option("--basis", help="Legal basis recorded in the ledger.")
    ] = "34 CFR 99.31(b)(2) research, de-identified with a record code",
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write a de-identified research extract under a new key, and ledger it."""
    from edsight.governance.deidentify import release_extract

    warehouse = open_warehouse(home)
    store = _store(home)
    with warehouse.connect(read_only=True) as con:
        result = release_extract(
            con, store, tables=table, out_dir=out, actor=_actor(), party=party, basis=basis
        )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(
        f"Release {result['release_id']}: {result['students']} students, "
        f"tables {json.dumps(result['tables'])} -> {out}"
    )


@governance_app.command("optout")
@handle_errors
def governance_optout(
    student: Annotated[str, typer.Option("--student", help="person_id of the student.")],
    undo: Annotated[bool, typer.Option("--undo", help="Withdraw the opt-out.")] = False,
    home: HomeOption = None,
) -> None:
    """Record a directory-information opt-out (FERPA 99.37); rosters leave the student out."""
    _store(home).set_directory_optout(student, not undo)
    typer.echo("Opt-out withdrawn" if undo else "Opt-out recorded")
