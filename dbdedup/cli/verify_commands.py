"""`dbdedup verify`: check the candidate pairs still pending verification by their pixels."""

from __future__ import annotations

import click

from .context import note, open_db, settings_of, workers_option


def register(cli: click.Group) -> None:
    cli.add_command(verify)


class _RichProgress:
    """The verification's progress callbacks drawn as a rich progress bar on stderr."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        self.progress = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.fields[errors]}"),
                                 console=console, transient=False, disable=not console.is_terminal)
        self.task = self.progress.add_task("verifying pairs", total=None, errors="")

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def pairs_found(self, pending: int) -> None:
        self.progress.update(self.task, total=pending)

    def pairs_done(self, done: int, errors: int) -> None:
        self.progress.update(self.task, completed=done,
                             errors=f"[red]{errors:,} error{'s' if errors != 1 else ''}" if errors else "")


class _Silent:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


def verify_progress(ctx: click.Context):
    """The progress bar of the pixel checks (a context manager giving the callbacks), or none with --quiet."""
    return _Silent() if settings_of(ctx).quiet else _RichProgress()


def summary_line(summary) -> str:
    """The one line a run ends with."""
    if not summary.pending:
        line = f"no pairs pending verification ({summary.seconds:.1f} s)"
    else:
        reasons = ", ".join(f"{reason} {count:,}" for reason, count in summary.reasons.items())
        line = (f"checked {summary.done:,} of {summary.pending:,} pending pairs in {summary.seconds:.1f} s: "
                f"{summary.verified:,} the same picture, {summary.rejected:,} not, {summary.errors:,} could not be "
                f"checked" + (f" ({reasons})" if reasons else ""))
    if summary.backfilled:
        line += f"; stored the colour signature of {summary.backfilled:,} older images"
    if summary.unchecked:
        line += (f"; {summary.unchecked:,} pairs the clusters did not need left unchecked "
                 "(dbdedup verify --unchecked checks them)")
    if summary.structure_failed:
        line += (f"; {summary.structure_failed:,} pairs verified by colour signature were apart in a region by "
                 "their structure, or their thumbnails off one tone edit, and checked by their pixels")
    if summary.tone_candidates:
        line += (f"; {summary.tone_candidates:,} pairs rejected for colour were close to one brightness or contrast "
                 "edit and left for the check by pixels")
    if summary.tones_apart:
        line += (f"; {summary.tones_apart:,} pairs verified by colour signature were refused: colours no one "
                 "brightness or contrast edit explains")
    if summary.overlay_candidates:
        line += (f"; {summary.overlay_candidates:,} pairs rejected for colour or layout differed as one see-through "
                 "overlay would make them and were left for the check by pixels")
    return line


@click.command()
@workers_option("Processes that read the files and compare them")
@click.option("--unchecked", is_flag=True,
              help="Also check the pairs a report left unchecked because its clusters did not need them.")
@click.pass_context
def verify(ctx: click.Context, workers: int | None, unchecked: bool) -> None:
    """Check the candidate pairs still pending verification by their pixels.

    Matching settles most pairs from the stored colour signatures; the rest (crops,
    rotations, added borders, embedding neighbours, images loaded before signatures
    were stored) are checked here with local features. Only the files dbdedup loaded
    are read; a file changed or gone since then gives its pairs an error, and the run
    goes on. Safe to interrupt and run again: it continues with the pairs still pending.

    A report checks only the pairs its clusters need (a member's pairs with the other
    members decide nothing) and marks the others unchecked; this command then checks
    those the clusters need now (a keeper deleted since), as the next report would, and
    --unchecked checks them all, for a verdict on every pair. The next command (or
    dbdedup.refresh()) builds the clusters again with the verdicts given here.

    \b
    Example:
      dbdedup verify
      dbdedup verify --workers 2 --quiet     # in cron, after dbdedup.refresh()
      dbdedup verify --unchecked             # every pair a verdict, needed or not
    """
    from ..clusters import verify_pairs_by_pixels

    with open_db(ctx) as conn:
        with verify_progress(ctx) as progress:
            summary = verify_pairs_by_pixels(conn, unchecked=unchecked, workers=workers, progress=progress,
                                             lock_wait=settings_of(ctx).lock_wait,
                                             on_wait=lambda message: note(ctx, message))
    note(ctx, summary_line(summary))
