"""Atomic output: files and directories are built under a temporary name beside the target and
renamed at the end, so an interrupted run never leaves half-written output. Plus JSON/JSONL I/O.

Temporary names carry the id of the process that made them (`.NAME.difusi-PID-XXXXXXXX`): a run
killed outright (kill -9) cannot clean up, so the next write to the same target removes the
leftovers of processes that no longer exist, and never those of a run still going.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from difusi.errors import DifusiError


def cache_dir() -> Path:
    """Where difusi keeps downloaded offline resources (`DIFUSI_CACHE`, default ~/.cache/difusi)."""
    return Path(os.environ.get("DIFUSI_CACHE", Path.home() / ".cache" / "difusi"))


@contextmanager
def atomic_directory(out: str | Path) -> Iterator[Path]:
    """Yield a fresh directory that replaces `out` if the block succeeds and vanishes if it fails."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DifusiError(f"{out} is a file; give a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    work = Path(tempfile.mkdtemp(prefix=_temporary_prefix(out), dir=out.parent))
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
    old = Path(tempfile.mkdtemp(prefix=_temporary_prefix(out), dir=out.parent))
    os.replace(out, old / out.name)
    os.replace(work, out)
    shutil.rmtree(old)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, on failure removed.

    A crash mid-write therefore never leaves a half-written file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp_name = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _temporary_prefix(target: Path) -> str:
    return f".{target.name}.difusi-{os.getpid()}-"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def remove_stale_temporaries(target: str | Path) -> list[Path]:
    """Remove the temporary files and folders beside `target` left by processes that have ended."""
    target = Path(target)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.difusi-(\d+)-[a-z0-9_]{{8}}")
    removed = []
    if not target.parent.is_dir():
        return removed
    for leftover in target.parent.iterdir():
        found = pattern.match(leftover.name)
        if found and not _process_exists(int(found.group(1))):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
            removed.append(leftover)
    return removed


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: Mapping) -> None:
    """Write one JSON document atomically (indented, UTF-8 kept readable)."""
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: str | Path, records: Iterable[Mapping]) -> None:
    """Write one JSON object per line atomically."""
    write_text(path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))


def read_json(path: str | Path) -> dict:
    """Read a JSON document; a missing or broken file is a DifusiError naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise DifusiError(f"{path} does not exist; check the run directory") from error
    except json.JSONDecodeError as error:
        raise DifusiError(f"{path} is not valid JSON ({error.msg} at line {error.lineno})") from error


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSONL file (blank lines skipped); a broken line is a DifusiError naming file and line."""
    records = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as error:
        raise DifusiError(f"{path} does not exist; check the run directory") from error
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise DifusiError(f"{path} line {number} is not valid JSON ({error.msg})") from error
    return records
