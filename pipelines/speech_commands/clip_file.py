"""Clips on disk, for data sets too big to hold in memory: a split's waveforms as the rows of a float32 file.

`data.load_source` writes each clip to a `ClipFile` as it reads it when the tree has more clips than
`data.in_memory_max_clips`; training, validation and prediction then read a batch of rows at a time
(`clip_batches`), so the process holds a few batches, never the data set. The rows are exactly the
float32 waveforms the in-memory path holds, in the same order, and `clip_batches` reads an array and
a `ClipFile` alike, into the same batches.

The file is read with `os.preadv`, not memory-mapped: a mapped file's pages count in the process's
resident memory once touched, so one epoch would grow it to the size of the file. The operating
system's page cache still keeps a file that fits in free memory, so later epochs read from RAM that
the kernel can take back.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf

from pipelines.errors import DataError

DTYPE = np.dtype("float32")
_CHUNK_ROWS = 256  # rows per read when iterating or reading a whole file


def _close_and_remove(fd: int, path: str) -> None:
    os.close(fd)
    Path(path).unlink(missing_ok=True)


class ClipFile:
    """Waveforms `(n, samples)` float32 as the rows of a file: appended while loading, then read by index.

    Indexing reads the rows from the file and returns a NumPy array, as indexing an array would (an
    integer: one row; a slice, a sequence of integers or a boolean mask: rows), so code written for
    arrays (`x[:8]`, `x[indices]`, `len(x)`, `x.shape`, `for clip in x`) runs on it. Only
    `np.asarray(x)` (and Keras given `x` itself, which calls it) reads every row into memory. Reads
    may come from several threads at once (tf.data's parallel map).

    Args:
        folder: Where the file is created (created if missing). The file is deleted when the object
            is garbage-collected, `close` is called, or the process ends.
        samples: Samples per clip.

    Example:
        >>> clips = ClipFile(folder, 16000)
        >>> clips.append(waveforms)  # (k, 16000) or (16000,)
        >>> batch = clips[[5, 0, 3]]  # (3, 16000), read from the file
    """

    def __init__(self, folder: str | Path, samples: int):
        if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 1:
            raise ValueError(f"Expected a positive integer for samples. Received: samples={samples!r}")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="clips-", suffix=".f32", dir=folder)
        self.path = Path(name)
        self.samples = int(samples)
        self._fd = fd
        self._rows = 0
        self._row_bytes = self.samples * DTYPE.itemsize
        self._finalizer = weakref.finalize(self, _close_and_remove, fd, name)

    # Writing ---------------------------------------------------------------------------------------------

    def append(self, clips: np.ndarray) -> None:
        """Write clips after the last row.

        Args:
            clips: `(k, samples)` or `(samples,)` floats.

        Raises:
            ValueError: The clips are not `samples` long.
            DataError: The file cannot be written (a full disk); the message names the file.
        """
        clips = np.ascontiguousarray(clips, dtype=DTYPE)
        if clips.shape[-1:] != (self.samples,) or clips.ndim > 2:
            raise ValueError(
                f"Expected clips of shape (k, {self.samples}) or ({self.samples},). Received: shape={clips.shape}"
            )
        view, offset = memoryview(clips).cast("B"), self._rows * self._row_bytes
        try:
            while view:
                written = os.pwrite(self._fd, view, offset)
                view, offset = view[written:], offset + written
        except OSError as error:
            raise DataError(
                f"{self.path}: cannot write the clips ({error.strerror or error}); free disk space there, set "
                "LSTM_PIPELINES_CACHE to a folder on a larger disk, or raise data.in_memory_max_clips to hold "
                "the clips in memory"
            ) from None
        self._rows += 1 if clips.ndim == 1 else len(clips)

    def close(self) -> None:
        """Close and delete the file now; the object cannot be read afterwards."""
        self._finalizer()

    # Reading ---------------------------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        """`(rows, samples)`."""
        return (self._rows, self.samples)

    @property
    def dtype(self) -> np.dtype:
        """float32."""
        return DTYPE

    @property
    def ndim(self) -> int:
        """2."""
        return 2

    @property
    def nbytes(self) -> int:
        """Bytes of the rows on disk."""
        return self._rows * self._row_bytes

    def __len__(self) -> int:
        return self._rows

    def _read_into(self, out: np.ndarray, first_row: int) -> None:
        """Fill `out` (C-contiguous float32 rows) from the file, starting at row `first_row`."""
        view, offset = memoryview(out).cast("B"), first_row * self._row_bytes
        while view:
            count = os.preadv(self._fd, [view], offset)
            if count == 0:
                raise DataError(f"{self.path}: the clip file ends early (was it changed or removed?)")
            view, offset = view[count:], offset + count

    def rows(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """The rows at `indices`, in their order (repeats allowed; negative indices count from the end).

        Args:
            indices: Integers.

        Returns:
            float32 `(len(indices), samples)`.

        Raises:
            IndexError: An index is out of range.
        """
        indices = np.asarray(indices).reshape(-1)
        if indices.size and not np.issubdtype(indices.dtype, np.integer):
            raise IndexError(f"Expected integer row indices. Received: dtype={indices.dtype}")
        indices = indices.astype(np.int64)
        outside = (indices < -self._rows) | (indices >= self._rows)
        if outside.any():
            raise IndexError(f"index {indices[outside][0]} is out of bounds for axis 0 with size {self._rows}")
        out = np.empty((len(indices), self.samples), DTYPE)
        for position, row in enumerate(indices % max(self._rows, 1)):
            self._read_into(out[position], int(row))
        return out

    def __getitem__(self, key: int | slice | np.ndarray | list) -> np.ndarray:
        if isinstance(key, int | np.integer) and not isinstance(key, bool):
            return self.rows([key])[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(self._rows)
            if step != 1:
                return self.rows(np.arange(start, stop, step))
            out = np.empty((max(stop - start, 0), self.samples), DTYPE)
            self._read_into(out, start)
            return out
        key = np.asarray(key)
        if key.dtype == bool:
            if key.shape != (self._rows,):
                raise IndexError(f"boolean index of shape {key.shape} does not match {self._rows} rows")
            key = np.flatnonzero(key)
        return self.rows(key)

    def __iter__(self) -> Iterator[np.ndarray]:
        for start in range(0, self._rows, _CHUNK_ROWS):
            yield from self[start : start + _CHUNK_ROWS]

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        array = self[:]
        return array if dtype is None else array.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"ClipFile({str(self.path)!r}, shape={self.shape})"


def clip_batches(
    x: np.ndarray | ClipFile, y: np.ndarray, batch_size: int, shuffle_seed: int | None = None
) -> tf.data.Dataset:
    """`(waveforms, labels)` batches of an array or of a `ClipFile`, the same batches for both.

    The dataset holds the clips' indices only: each batch of indices is read from `x` in a parallel
    map (rows of an array, or of the file), so a `ClipFile`'s epoch never holds the data set and an
    array is not copied into TensorFlow (as `from_tensor_slices` would).

    Args:
        x: Waveforms `(n, samples)`.
        y: Labels `(n,)`.
        batch_size: Clips per batch.
        shuffle_seed: Seed of a shuffle over all clips, new every epoch; `None`: in order. Default: `None`.

    Returns:
        A batched `tf.data.Dataset`.
    """
    rows = x.rows if isinstance(x, ClipFile) else lambda indices: np.asarray(x[indices], dtype=DTYPE)
    labels = tf.constant(np.asarray(y))
    dataset = tf.data.Dataset.range(len(x))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)

    def read(indices):
        waveforms = tf.numpy_function(rows, [indices], tf.float32)
        return tf.ensure_shape(waveforms, (None, x.shape[1])), tf.gather(labels, indices)

    return dataset.batch(batch_size).map(read, num_parallel_calls=tf.data.AUTOTUNE)
