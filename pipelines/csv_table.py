"""A CSV file read as strings, with the file line on which each row starts (for error messages)."""

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.errors import DataError

ENCODING = "utf-8-sig"  # a byte-order mark (Excel's and Notepad's UTF-8) is not part of the first column's name


def _records(file: Path, separator: str) -> tuple[np.ndarray, np.ndarray]:
    """The 1-based line on which each CSV record starts, and its number of fields.

    A record's fields are counted up to its last non-blank one (0: a blank line).

    The `csv` module follows quoted fields across lines, so a record after a quoted line break
    still gets its own line.
    """
    starts, fields, previous = [], [], 0
    with open(file, newline="", encoding=ENCODING) as handle:
        reader = csv.reader(handle, delimiter=separator)
        for record in reader:
            starts.append(previous + 1)
            filled = [index for index, cell in enumerate(record) if cell.strip()]
            fields.append(filled[-1] + 1 if filled else 0)
            previous = reader.line_num
    return np.asarray(starts, dtype=np.int64), np.asarray(fields, dtype=np.int64)


def read_csv_strings(file: Path, separator: str = ",") -> tuple[pd.DataFrame, np.ndarray]:
    """Read a CSV as strings: the header is its first non-blank line, and blank lines are dropped.

    Args:
        file: The CSV file (UTF-8, with or without a byte-order mark).
        separator: The one-character field separator. Default: `","`.

    Returns:
        `(table, lines)`: every cell a string or NA, and the file line (1-based) of each row.

    Raises:
        DataError: Naming the file, and the line where there is one, when it is empty, blank, has
            a row with more fields than the header or cannot be read as CSV.
    """
    try:
        starts, fields = _records(file, separator)
    except (csv.Error, UnicodeDecodeError) as error:
        raise DataError(f"{file}: cannot be read as CSV: {error}") from None
    blank = fields == 0
    if blank.all():
        raise DataError(f"{file}: file is empty (no header line)")
    header = int(np.argmax(~blank))
    if (longer := np.flatnonzero(fields[header + 1 :] > fields[header])).size:
        row = header + 1 + longer[0]
        raise DataError(
            f"{file}, line {starts[row]}: {fields[row]} fields, but the header on line {starts[header]} "
            f"has {fields[header]}"
        )
    try:
        raw = pd.read_csv(
            file,
            sep=separator,
            dtype=str,
            skip_blank_lines=False,
            encoding=ENCODING,
            skiprows=int(starts[header]) - 1,
            index_col=False,
        )
    except pd.errors.ParserError as error:
        raise DataError(f"{file}: cannot be read as CSV: {error}") from None
    raw.columns = [str(column).strip() for column in raw.columns]
    rows_blank = blank[header + 1 :]
    if len(raw) != len(rows_blank):  # pandas and csv disagree on where the records are
        raise DataError(f"{file}: cannot be read as CSV: {len(raw)} rows, but {len(rows_blank)} records")
    if rows_blank.all():
        raise DataError(f"{file}: no data rows after the header on line {starts[header]}")
    kept = ~rows_blank
    return raw[kept].reset_index(drop=True), starts[header + 1 :][kept]
