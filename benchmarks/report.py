"""Shared by the benchmark scripts: the machine's CPU name, Markdown tables and rewriting one marked doc section."""

import platform
from pathlib import Path

import pandas as pd


def cpu_model() -> str:
    """The CPU model name.

    Returns:
        The `model name` of /proc/cpuinfo (Linux), else the machine type.
    """
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def markdown_table(rows: list[dict[str, str]], align: str) -> str:
    """A Markdown pipe table of cells already formatted as text.

    Args:
        rows: One dict per row, column name to cell text; the first row's keys are the header.
        align: One letter per column, `l` (text) or `r` (numbers).

    Returns:
        The table, one line per row, without a trailing newline.
    """
    frame = pd.DataFrame(rows, dtype=str)
    if len(align) != len(frame.columns):
        raise ValueError(f"Expected one alignment letter per column ({len(frame.columns)}). Received: align={align!r}")
    colalign = ["right" if letter == "r" else "left" for letter in align]
    # The cells keep their own formatting (digits, thousands separators, units): no number parsing.
    return frame.to_markdown(index=False, colalign=colalign, disable_numparse=True)


def write_section(path: str | Path, section: str, start: str, end: str, title: str = "# Results\n") -> None:
    """Replace the section between the `start` and `end` markers of `path`, or append it.

    Args:
        path: Markdown file; created with `title` if missing.
        section: New text, markers included.
        start: Opening marker, e.g. `<!-- stock_quality:start -->`.
        end: Closing marker.
        title: First line of a new file.
    """
    path = Path(path)
    text = path.read_text() if path.exists() else title
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
