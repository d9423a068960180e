"""`dbdedup load`, `dbdedup status`, `dbdedup errors`: getting images in, and what is in."""

from __future__ import annotations

import json
import os
import sys

import click

from ..reasons import REASONS
from ..terminal import printable
from .context import PathParam, max_pixels_option, note, open_db, settings_of, warn, workers_option
from .output import emit_rows, format_option


def register(cli: click.Group) -> None:
    cli.add_command(load)
    cli.add_command(status)
    cli.add_command(errors)


# ---------------------------------------------------------------- progress bar


class _RichProgress:
    """The loader's progress callbacks drawn as a rich progress bar on stderr."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
        from rich.text import Text

        class FilesPerSecond(ProgressColumn):
            def render(self, task):
                speed = task.finished_speed or task.speed
                return Text("" if speed is None else f"{speed:,.0f} files/s", style="progress.data.speed")

        console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.fields[found]}"),
            FilesPerSecond(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[errors]}"),
            console=console,
            transient=False,
            disable=not console.is_terminal,
        )
        self.task = self.progress.add_task("loading", total=None, found="?", errors="")

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def files_found(self, found: int, scan_complete: bool) -> None:
        if scan_complete:
            self.progress.update(self.task, total=found, found=f"{found:,}")
        else:
            self.progress.update(self.task, found=f"{found:,}+")

    def files_done(self, done: int, errors: int) -> None:
        self.progress.update(self.task, completed=done,
                             errors=f"[red]{errors:,} error{'s' if errors != 1 else ''}" if errors else "")

    def waiting(self, message: str) -> None:
        self.progress.console.print(printable(message), markup=False, highlight=False)


class _Silent:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


# ---------------------------------------------------------------- load


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _summary_lines(summary) -> list[str]:
    lines = [
        f"loaded {_plural(summary.loaded, 'image')}, skipped {summary.unchanged:,} unchanged, "
        f"{_plural(summary.error_count, 'error')}, {summary.ignored:,} non-image files ignored"
        + (f", {summary.missing:,} gone from disk (marked missing)" if summary.missing else "")
        + f" in {summary.seconds:.1f} s",
    ]
    if summary.errors:
        by_reason = ", ".join(f"{reason} {count:,}" for reason, count in summary.errors.items())
        lines.append(f"errors by reason: {by_reason} (list them: dbdedup errors)")
    for folder, why in summary.left_out:
        lines.append(f"left out {folder}: {why}; give it as a path to load it")
    lines.append(f"exact duplicates: {_plural(summary.exact_duplicate_groups, 'group')} of byte-identical files")
    if summary.interrupted_runs:
        runs = ", ".join(str(r) for r in summary.interrupted_runs)
        lines.append(f"earlier run(s) {runs} had been interrupted; this run finished their work")
    if summary.keypoints:
        lines.append("keypoints: keys stored for crops and rotations (matched by report/match, checked by geometry)")
    if summary.embedder:
        lines.append(f"embeddings: {summary.embedded:,} new vectors ({summary.embedder})")
    lines.extend(summary.notes)
    return lines


@click.command()
@click.argument("paths", nargs=-1, required=True, type=PathParam())
@click.option("--recursive/--no-recursive", default=True, show_default=True,
              help="Walk sub-folders (symlinked folders are followed, loops are not).")
@workers_option("Processes that decode and hash images")
@max_pixels_option("they become errors")
@click.option("--orientations/--no-orientations", default=True, show_default=True,
              help="Also store the pHash of the 7 other orientations and of the image with uniform borders "
                   "trimmed, so flipped, rotated and bordered copies match.")
@click.option("--keypoints/--no-keypoints", default=False, show_default=True,
              help="Also store keypoint keys (ORB) so that crops and rotated copies become candidates (each "
                   "checked by matching local features); opt-in: about 4 ms more worker CPU per image.")
@click.option("--embedder", default="default", show_default=True, metavar="default|none|onnx:PATH",
              help="Embedding vectors for pgvector: the built-in descriptor (no weights), none, or an ONNX image "
                   "model of yours (needs the `onnx` extra).")
@click.option("--index", "index_method", type=click.Choice(["hnsw", "ivfflat"]), default=None,
              help="pgvector index on the vectors [default: the one in use, else ivfflat].")
@click.pass_context
def load(ctx: click.Context, paths: tuple[str, ...], recursive: bool, workers: int | None, max_pixels: int,
         orientations: bool, keypoints: bool, embedder: str, index_method: str | None) -> None:
    """Hash every image under PATH... into the database (again: only new or changed files).

    Images are found by content (JPEG, PNG, GIF, WebP, BMP, TIFF; HEIC/AVIF with
    the `formats` extra). Files that cannot be loaded are recorded with a reason
    and do not stop the load; files gone from disk are marked missing. Safe to
    interrupt and run again.

    \b
    Example:
      dbdedup load ~/Pictures /mnt/backup/photos
      dbdedup load --no-recursive --workers 4 ./scans
      dbdedup load ~/Pictures --embedder onnx:~/models/resnet18.onnx
      dbdedup load --keypoints ~/Pictures       # also find crops and rotated copies
    """
    from ..embedding import load_embedder
    from ..load import check_roots, load_paths

    check_roots(paths)  # a mistyped path fails before the database is even started
    embedder_spec = None if embedder.lower() == "none" else embedder
    if embedder_spec is not None and embedder_spec.startswith("onnx:"):
        embedder_spec = "onnx:" + os.path.expanduser(embedder_spec[len("onnx:"):])
    if embedder_spec is not None:
        load_embedder(embedder_spec)  # a bad model path fails before the database is even started
    quiet = settings_of(ctx).quiet
    with open_db(ctx) as conn:
        bar = _Silent() if quiet else _RichProgress()
        with bar as progress:
            summary = load_paths(conn, paths, workers=workers, recursive=recursive, max_pixels=max_pixels,
                                 progress=progress, orientations=orientations, keypoints=keypoints,
                                 embedder=embedder_spec,
                                 index_method=index_method, lock_wait=settings_of(ctx).lock_wait)
    for line in _summary_lines(summary):
        note(ctx, line)
    for line in summary.warnings:
        warn(line)


# ---------------------------------------------------------------- status and errors


@click.command()
@format_option(choices=("table", "json", "csv"))
@click.option("--runs", "run_limit", type=click.IntRange(min=0), default=5, show_default=True,
              help="How many of the last load runs to show.")
@click.pass_context
def status(ctx: click.Context, fmt: str, run_limit: int) -> None:
    """What is in the database: images, exact duplicates, errors, missing files, last runs.

    \b
    Example:
      dbdedup status
      dbdedup status --format json | jq .counts.images
    """
    from ..status import COUNT_LABELS, collect_status

    with open_db(ctx) as conn:
        result = collect_status(conn, runs=run_limit)
    if fmt == "json":
        json.dump(result.to_json(), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return
    count_rows = [{"what": COUNT_LABELS.get(k, k), "key": k, "count": v} for k, v in result.counts.items()]
    if fmt == "csv":
        emit_rows(count_rows, ["key", "count"], "csv")
        return
    emit_rows(count_rows, ["what", "count"], "table", title="dbdedup status")
    if result.runs:
        runs = [{**r, "started_at": r["started_at"].strftime("%Y-%m-%d %H:%M")} for r in result.runs]
        emit_rows(runs, ["run", "started_at", "status", "loaded", "unchanged", "errors", "missing", "seconds"],
                  "table", title="last load runs")


_ERRORS_HELP = (
    "Every file that could not be loaded, with the reason.\n\n\b\nReasons:\n"
    + "".join(f"  {code:<19} {text}\n" for code, text in REASONS.items())
    + "\n\b\nExample:\n  dbdedup errors\n  dbdedup errors --reason truncated --format csv > truncated.csv\n"
)


@click.command(help=_ERRORS_HELP)
@format_option()
@click.option("--reason", type=click.Choice(sorted(REASONS)), default=None, help="Only errors with this reason.")
@click.pass_context
def errors(ctx: click.Context, fmt: str, reason: str | None) -> None:
    from ..status import ERROR_COLUMNS, current_errors

    with open_db(ctx) as conn:
        rows = current_errors(conn, reason=reason)
    columns = ["path", "reason", "detail"] if fmt == "table" else list(ERROR_COLUMNS)
    emit_rows(rows, columns, fmt, title=f"{len(rows):,} file(s) could not be loaded" if fmt == "table" else None)
