"""`dbdedup embeddings refit`: fit the embedding reduction again and re-project every vector."""

from __future__ import annotations

import click

from .context import note, open_db, settings_of


def register(cli: click.Group) -> None:
    cli.add_command(embeddings)


@click.group()
def embeddings() -> None:
    """Manage the embedding vectors (pgvector)."""


@embeddings.command()
@click.option("--embedder", default=None, metavar="NAME",
              help="Which stored embedder to refit (grey-v1, onnx:...) [default: the most recently loaded].")
@click.option("--index", "index_method", type=click.Choice(["hnsw", "ivfflat"]), default=None,
              help="Rebuild the vector index as this kind [default: the one in use].")
@click.pass_context
def refit(ctx: click.Context, embedder: str | None, index_method: str | None) -> None:
    """Fit the PCA reduction again on every stored descriptor, re-project all vectors, rebuild the index.

    The reduction is fitted once, on the first load; refit after the collection has grown
    or changed a lot. The next match recomputes the embedding pairs.

    \b
    Example:
      dbdedup embeddings refit
      dbdedup embeddings refit --index ivfflat
    """
    from ..embedding_index import refit as refit_vectors

    with open_db(ctx) as conn:
        result = refit_vectors(conn, embedder=embedder, index_method=index_method,
                               lock_wait=settings_of(ctx).lock_wait)
    note(ctx, f"refitted {result.embedder} on {result.fitted_rows:,} descriptors, re-projected {result.projected:,} "
              f"vectors, index {result.index} in {result.seconds:.1f} s")
