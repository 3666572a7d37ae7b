"""Where is the worker now? A stack probe the fault harness puts on a worker's PYTHONPATH.

Python imports `sitecustomize` at start-up. When `FAULT_PROBE_FILE` is set, a daemon thread looks
at the main thread's stack every 10 ms and, whenever the chain of this project's functions on it
changes, appends a line to that file: a timestamp, a tab, the chain (`module:function`, outermost
first, joined by ` > `).
The harness reads the file to time a kill and, after the kill, to say where it landed. Nothing is
written when the variable is unset, and the worker's code is not touched.
"""

import os
import sys
import threading
import time

_PATH = os.environ.get("FAULT_PROBE_FILE")
_OURS = ("pipelines", "lstm_models")


def _chain(frame):
    names = []
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.split(".")[0] in _OURS:
            names.append(f"{module}:{frame.f_code.co_name}")
        frame = frame.f_back
    return names[::-1]


def _watch(main_id, path):
    last = None
    with open(path, "a", buffering=1) as out:
        while True:
            frame = sys._current_frames().get(main_id)
            if frame is None:
                return
            chain = _chain(frame)
            del frame
            if chain != last:
                last = chain
                out.write(f"{time.time():.3f}\t{' > '.join(chain)}\n")
            time.sleep(0.01)


if _PATH:
    threading.Thread(target=_watch, args=(threading.main_thread().ident, _PATH), daemon=True).start()
