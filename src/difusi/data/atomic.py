"""Atomic output directories: built under a temporary name next to the target, renamed at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from difusi.errors import DifusiError


@contextmanager
def atomic_directory(out: str | Path) -> Iterator[Path]:
    """Yield a fresh directory that replaces `out` if the block succeeds and vanishes if it fails."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DifusiError(f"{out} is a file; give a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    # mkdtemp makes the directory private (0700); the output should get the usual umask permissions.
    umask = os.umask(0)
    os.umask(umask)
    work.chmod(0o777 & ~umask)
    try:
        yield work
        _replace_directory(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _replace_directory(work: Path, out: Path) -> None:
    """Move `work` to `out`; an earlier `out` is first moved aside, so each step is one rename."""
    if not out.exists():
        os.replace(work, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    os.replace(out, old / out.name)
    os.replace(work, out)
    shutil.rmtree(old)
