"""An evaluation's finished answers, kept as they are made, so a killed run continues where it was.

OUT/generations.partial.jsonl holds a stamp line (what the answers depend on: the checkpoint's
files, the test data, every setting) and then one line per answered row. A relaunch with the same
stamp takes those answers and generates only the rest; with another stamp it starts afresh and says
which input changed. The finished evaluation removes the journal.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

JOURNAL = "generations.partial.jsonl"


def file_identity(path: str | Path | None) -> object:
    """What tells a local file or directory's contents apart (name, size, mtime of each file); a hub
    id or None as itself."""
    if path is None or not Path(path).exists():
        return None if path is None else str(path)
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [[str(p.relative_to(path) if path.is_dir() else p.name), p.stat().st_size, p.stat().st_mtime_ns]
            for p in files]  # fmt: skip


class AnswerJournal:
    """The journal of one evaluation in `out`; `done` holds the answers a killed run left."""

    def __init__(self, out: Path, stamp: dict):
        self.path = out / JOURNAL
        self.stamp = json.loads(json.dumps(stamp))  # as it reads back from JSON
        self.done: dict[int, tuple[str, int]] = {}
        if self.path.is_file():
            self._take_over()
        if not self.done:
            out.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", encoding="utf-8") as f:
                f.write(json.dumps({"stamp": self.stamp}, ensure_ascii=False) + "\n")

    def _take_over(self) -> None:
        lines = self.path.read_text(encoding="utf-8").split("\n")
        try:
            saved = json.loads(lines[0])["stamp"]
        except (json.JSONDecodeError, KeyError, TypeError):  # killed while the stamp was written
            saved = {}
        changed = next((key for key in self.stamp if saved.get(key) != self.stamp[key]), None)
        if changed is not None:
            logger.warning("%s was made with another %s: starting the evaluation afresh", self.path, changed)
            return
        for line in lines[1:]:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # the last line, cut by the kill
                break
            self.done[record["index"]] = (record["generation"], record["answer_tokens"])
        # Drop a cut last line, so appends start on a fresh one.
        kept = [lines[0]] + [json.dumps({"index": i, "generation": g, "answer_tokens": n}, ensure_ascii=False)
                             for i, (g, n) in self.done.items()]  # fmt: skip
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        logger.warning("%s: continuing with %d answered rows", self.path, len(self.done))

    def append(self, indices: list[int], answers: list[tuple[str, int]]) -> None:
        """Keep a generated batch, on disk before the next one starts."""
        with self.path.open("a", encoding="utf-8") as f:
            for index, (generation, tokens) in zip(indices, answers, strict=True):
                record = {"index": index, "generation": generation, "answer_tokens": tokens}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
