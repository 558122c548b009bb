"""`driftline data ...`: what is kept of people's data, and erasing it."""

from __future__ import annotations

import getpass

import click

from driftline.streams.cli.common import console, print_table, settings_for_cli


@click.group()
def data() -> None:
    """Personal data: erase an entity's rows (see README, "Retention and erasure")."""


@data.command("erase")
@click.option("--entity", "entity_id", required=True, help="the entity id whose data to erase")
@click.option("--actor", default=getpass.getuser, show_default="current user")
@click.option(
    "--worker",
    "worker_url",
    default=None,
    help=(
        "URL of the worker with the lineage role, which owns the store (default: the "
        "running `driftline up` stack's; with none, this process opens the store)"
    ),
)
def erase(entity_id: str, actor: str, worker_url: str | None) -> None:
    """Delete an entity's rows from every table holding personal data (and the feature
    store's online store), as a signed, role-checked request. The audit log records it
    with a keyed hash of the id, never the id."""
    from driftline.streams.control.erasure import erase as run

    settings = settings_for_cli()
    with console.status("erasing where the store is, then waiting for the audit record..."):
        done = run(settings, entity_id, actor, worker_url=worker_url)
    outcome = done.outcome
    rows = [[table, count] for table, count in outcome["tables"].items()]
    if outcome.get("online_store") is not None:
        rows.append(["feature store (online)", outcome["online_store"]])
    print_table(["where", "rows deleted"], rows, title="erased")
    evidence = done.event.evidence
    console.print(
        f"erased entity hmac-sha256:{done.entity_hash[:16]}… ({outcome['rows_deleted']} rows) in "
        f"{done.where}; audited as {done.event.type} by {done.event.actor} "
        f"(command {evidence['command_id']})",
        highlight=False,
    )
