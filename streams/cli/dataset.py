"""`driftline dataset ...`: point-in-time training datasets from the feature store."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from driftline.streams.cli.common import console, settings_for_cli


@click.group()
def dataset() -> None:
    """Training datasets with manifests (feature service, view versions, fingerprint)."""


@dataset.command("build")
@click.option("--feature-service", required=True, help="the Feast feature service to retrieve")
@click.option(
    "--entities",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Parquet of entity rows: the entity id, event_timestamp, and any label columns",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Parquet to write"
)
@click.option(
    "--entity-column",
    default="entity_id",
    show_default=True,
    help="the column of --entities that holds the entity id",
)
@click.option(
    "--feature-repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="the Feast repository; default: DRIFTLINE_FEATURES_REPO",
)
def build(
    feature_service: str, entities: Path, out: Path, entity_column: str, feature_repo: Path | None
) -> None:
    """Every feature of the service as it was at each entity row's time, and a manifest."""
    from driftline.features.configured import open_feature_store
    from driftline.features.datasets import build_dataset, manifest_path, read_entities
    from driftline.streams.exceptions import StreamsError

    settings = settings_for_cli()
    store = open_feature_store(feature_repo or settings.features.repo)
    if store is None:
        raise StreamsError(
            "no Feast repository: pass --feature-repo or set DRIFTLINE_FEATURES_REPO"
        )
    rows = read_entities(entities, entity_column)
    with Progress(
        TextColumn("retrieving"), BarColumn(), MofNCompleteColumn(), console=console
    ) as progress:
        task = progress.add_task("retrieve", total=rows.num_rows)
        manifest = build_dataset(
            store,
            feature_service,
            rows,
            out,
            progress=lambda done, _total: progress.update(task, completed=done),
        )
    start, end = manifest.entity_time_range
    console.print(
        f"wrote {manifest.rows:,} rows to {out} ({manifest.fingerprint[:23]}...), "
        f"{manifest.feature_service['name']}@{manifest.feature_service['version']}, "
        f"entities from {start} to {end}; manifest {manifest_path(out)}"
    )
