"""Progress of long commands on a terminal, never into a pipe or a file.

On a terminal (the console's stream is one) a Rich progress line shows the work as it goes and is
erased at the end; otherwise nothing is drawn, and the command's plain lines (a run's log, the
sync's tables, "Wrote N rows") say the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    import pyarrow as pa


@contextmanager
def counting_rows(reader: pa.RecordBatchReader, console: Console, label: str) -> Iterator[pa.RecordBatchReader]:
    """``reader``, its rows counted on a progress line as they are read (on a terminal only)."""
    if not console.is_terminal:
        yield reader
        return
    import pyarrow as pa

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,.0f} rows"), TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in reader:
                yield batch
                bar.advance(task, batch.num_rows)

        yield pa.RecordBatchReader.from_batches(reader.schema, batches())
