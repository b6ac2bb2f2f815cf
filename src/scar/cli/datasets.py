"""``scar datasets``: what data SCAR can run on, where it comes from, and whether it is here."""

from __future__ import annotations

import json
import os

import click
from rich.table import Table

from .. import datasets as D
from .. import validation as check
from .common import console


@click.group("datasets")
def datasets() -> None:
    """Bundled datasets and the paper's datasets read from your files."""


def _rows() -> list[dict[str, str]]:
    return [
        {
            "name": info.name,
            "kind": info.kind,
            "models": ",".join(info.models),
            "source": info.source,
            "size": info.size,
            "licence": info.licence,
            "stands_in_for": info.stands_in_for,
            "status": info.status(),
        }
        for info in D.DATASETS.values()
    ]


@datasets.command("list")
@click.option(
    "--data-dir",
    default=None,
    help=f"Folder of the paper's datasets [default: ${D.DATA_DIR_ENV} or ~/scar_data].",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per dataset, a line each.")
def list_(data_dir: str | None, as_json: bool) -> None:
    """Name, source package, size, licence, the paper's dataset it stands in for, and status."""
    if data_dir is not None:
        os.environ[D.DATA_DIR_ENV] = data_dir
    rows = _rows()
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    table = Table(title=f"SCAR datasets (your files: {D.data_dir()})")
    for col in ("name", "models", "source", "size", "licence", "stands in for", "status"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r["name"],
            r["models"],
            r["source"],
            r["size"],
            r["licence"],
            r["stands_in_for"],
            r["status"],
        )
    console(piped_width=200).print(table)


@datasets.command("show")
@click.argument("name")
def show(name: str) -> None:
    """Load one dataset and print what it holds (checks that it is readable)."""
    check.one_of("NAME", name, sorted(D.DATASETS))
    data = D.load(name)
    if isinstance(data, D.Classification):
        what = (
            f"{data.X.shape[0]:,} examples x {data.X.shape[1]} features, {data.n_classes} classes"
        )
    elif isinstance(data, D.Ratings):
        what = f"{len(data):,} ratings, {data.n_users:,} users x {data.n_items:,} items"
    else:
        what = f"{data.n_docs:,} documents, {data.n_words:,} words, {data.n_tokens:,} tokens"
    click.echo(f"{name}: {what} ({D.DATASETS[name].source})")
