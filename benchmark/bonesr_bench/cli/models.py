"""`bonesr-bench models`: the installed models."""

from __future__ import annotations

from rich.table import Table

from bonesr_bench.cli.common import (
    app,
    console,
)


@app.command()
def models():
    """List the installed models (entry points in the group bonesr_bench.models).

    A submission file or a package.module:attribute needs no installation: pass it directly.
    """
    from bonesr_bench.models import ENTRY_POINT_GROUP, installed_models

    found = installed_models()
    if not found:
        console.print(f"no installed models (entry point group {ENTRY_POINT_GROUP})")
        return
    table = Table(title="installed models", title_justify="left")
    table.add_column("name")
    table.add_column("entry point")
    for name, target in found:
        table.add_row(name, target)
    console.print(table)
