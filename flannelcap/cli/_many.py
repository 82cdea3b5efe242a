"""Several capture files in one command: each decoded by itself, in parallel worker processes,
the outputs printed in the order of the files.

Rule: process plumbing only. A worker runs the same one-file function the command runs, its
standard output sent to a temporary file and its errors caught into text; the parent prints
each file's output and errors in order, as soon as the files before it are done. One file's
error does not stop the others; the exit status is the worst of them.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from multiprocessing import get_context
from pathlib import Path

from flannelcap._errors import FlannelcapError


def default_jobs(files: int) -> int:
    """One worker per processor, no more than there are files."""
    return max(1, min(files, os.cpu_count() or 1))


def _guarded(work: Callable[[str], int], path: str) -> int:
    try:
        return work(path)
    except FlannelcapError as exc:
        print(f"flannelcap: error: {exc}", file=sys.stderr)
        return 1


def _in_worker(work: Callable[[str], int], path: str, output: Path) -> tuple[int, str]:
    errors = io.StringIO()
    with (
        open(output, "w", encoding="utf-8") as out,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(errors),
    ):
        code = _guarded(work, path)
    return code, errors.getvalue()


def run_each(paths: Sequence[str], work: Callable[[str], int], jobs: int, before: Callable[[int, str], None]) -> int:
    """Run ``work`` on each path (``jobs`` at a time), printing ``before(index, path)`` and then
    the path's output, in order. Returns the worst exit status."""
    if jobs <= 1:
        worst = 0
        for index, path in enumerate(paths):
            before(index, path)
            sys.stdout.flush()
            worst = max(worst, _guarded(work, path))
        return worst
    # fork: the workers start with flannelcap already imported (spawn would import it again each).
    with tempfile.TemporaryDirectory(prefix="flannelcap-") as scratch:
        pool = get_context("fork").Pool(jobs)
        try:
            outputs = [Path(scratch) / f"{index}.out" for index in range(len(paths))]
            results = [
                pool.apply_async(_in_worker, (work, path, out)) for path, out in zip(paths, outputs, strict=True)
            ]
            worst = 0
            for index, (path, result, output) in enumerate(zip(paths, results, outputs, strict=True)):
                code, errors = result.get()
                before(index, path)
                with open(output, encoding="utf-8") as out:
                    shutil.copyfileobj(out, sys.stdout)
                sys.stdout.flush()
                sys.stderr.write(errors)
                output.unlink()
                worst = max(worst, code)
            pool.close()
            return worst
        finally:
            pool.terminate()  # the reader went away, or Ctrl-C: stop the files still being decoded
            pool.join()
