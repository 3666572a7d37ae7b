"""Shared by the benchmark scripts: the machine's CPU name and rewriting one marked doc section."""

import platform
from pathlib import Path


def cpu_model():
    """The CPU model name from /proc/cpuinfo (Linux), else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def write_section(path, section, start, end, title="# Results\n"):
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
