"""A training run's directory across kills and relaunches: one live run per directory, checkpoints
taken only when whole, and `--resume` safe to pass always.

A scheduler that kills a job and relaunches the same command line must end with what one
uninterrupted run writes. So: a lock (an OS file lock, released by the kernel when its process dies,
so a killed run leaves no stale lock) keeps a second run out; a checkpoint counts only once it holds
difusi's completeness marker, written after transformers has written every file of it; and a run
whose last checkpoint is its final step is finished from that checkpoint without training further.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch.distributed as dist
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from difusi.errors import DifusiError

LOCK_FILE = ".lock"
COMPLETE_MARKER = "difusi-checkpoint-complete"
# What a run writes into its directory; a fresh start under --resume clears these and nothing else.
RUN_FILES = ("metrics.jsonl", "run_info.json", "tensorboard", "checkpoints")
logger = logging.getLogger(__name__)


class RunLock:
    """An exclusive lock on a run directory, held until `release()` or the process ends."""

    def __init__(self, out: Path):
        self.out, self.created = out, not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        self.file = (out / LOCK_FILE).open("a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise DifusiError(
                f"{out} is in use by a running run (pid {holder}); wait for it to end or choose another --out"
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()

    def release(self, discard: bool = False) -> None:
        """Unlock; with `discard` (the run failed before writing anything), a directory the lock
        created is removed again, so bad input leaves nothing behind."""
        if self.file.closed:
            return
        if discard and self.created and [p.name for p in self.out.iterdir()] == [LOCK_FILE]:
            (self.out / LOCK_FILE).unlink()
            self.out.rmdir()
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


@dataclass(frozen=True)
class StartPoint:
    """Where a (re)launched run starts: `checkpoint` (None: from the beginning), or nowhere if `complete`."""

    checkpoint: str | None = None
    complete: bool = False


def is_complete_run(out: Path, final: str) -> bool:
    """The run wrote its final directory and, after it, run_info.json: nothing is left to do."""
    return (out / final).is_dir() and (out / "run_info.json").is_file()


def complete_checkpoints(out: Path) -> list[Path]:
    """The run's whole checkpoints (those holding the completeness marker), oldest first."""
    folder = out / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if (p / COMPLETE_MARKER).is_file()]
    return sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[1]))


def start_point(out: Path, resume: bool, final: str, clean: bool) -> StartPoint:
    """Decide how a run into `out` starts; refuses to mix two runs in one directory.

    With `resume`: a finished run is complete; otherwise the last whole checkpoint, half-written
    ones being removed (when `clean`: the main process); with none, the run starts from the
    beginning, its earlier files removed. Without `resume`, a directory that holds a run is refused.
    """
    if not resume:
        if (out / "metrics.jsonl").exists() or (out / "checkpoints").exists():
            raise DifusiError(
                f"{out} already holds a run; pass --resume to continue it or choose a new --out"
            )
        return StartPoint()
    if is_complete_run(out, final):
        return StartPoint(complete=True)
    whole = complete_checkpoints(out)
    if clean:
        for partial in sorted((out / "checkpoints").glob(f"{PREFIX_CHECKPOINT_DIR}-*")):
            if partial not in whole:
                logger.warning("removing %s: a checkpoint its run did not finish writing", partial)
                shutil.rmtree(partial)
    if whole:
        return StartPoint(checkpoint=str(whole[-1]))
    logger.warning("no checkpoint to resume in %s: starting from the beginning", out / "checkpoints")
    if clean:
        for name in RUN_FILES:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    return StartPoint()


# Settings that change no weight: where the run is written and how often it logs and saves.
BOOKKEEPING = ("out", "logging_steps", "save_steps")


def differing_setting(saved, now) -> str | None:
    """The first setting, bookkeeping aside, in which two run configs differ (None: the same run)."""
    a, b = saved.to_dict(), now.to_dict()
    return next((key for key in b if key not in BOOKKEEPING and a.get(key) != b[key]), None)


def check_same_settings(out: Path, config) -> None:
    """A resumed run must continue the run in `out` with its settings (OUT/config.yaml, when written)."""
    saved_path = out / "config.yaml"
    if not saved_path.is_file():
        return
    saved = type(config).from_yaml(saved_path)
    if (key := differing_setting(saved, config)) is not None:
        raise DifusiError(
            f"{out} holds a run with other settings ({key}: {saved.to_dict().get(key)!r} there, "
            f"{config.to_dict()[key]!r} now); relaunch with the same settings or choose another --out"
        )


def claim_run(out: Path, resume: bool, final: str, config, args) -> tuple[RunLock | None, StartPoint]:
    """Lock `out` (main process), check a resumed run's settings and find where it starts; `final` is
    the directory the finished run writes (adapter or model). Every process gets the same start."""
    main = args.process_index == 0
    lock = RunLock(out) if main else None
    try:
        if resume:
            check_same_settings(out, config)
        with args.main_process_first(desc="run directory"):
            start = start_point(out, resume, final, clean=main)
    except BaseException:
        if lock is not None:
            lock.release(discard=True)
        raise
    if start.complete:
        logger.warning("the run in %s is complete (%s/ and run_info.json written): nothing to do", out, final)
        if lock is not None:
            lock.release()
    return lock, start


def training_finished(checkpoint: str) -> bool:
    """The checkpoint was saved at the run's last optimizer step."""
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    return state["global_step"] >= state["max_steps"]


class CheckpointMarker(TrainerCallback):
    """Marks each checkpoint whole once every process has written its part of it."""

    def on_save(self, args, state, control, **kwargs):
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank's RNG state is in the folder
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            (folder / COMPLETE_MARKER).touch()
