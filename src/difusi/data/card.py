"""Stage 9's record: `data_card.json` (for programs) and `data_card.md` (for people), from one dict."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

PACKAGES = ("difusi", "pyarrow", "polars", "numpy", "scikit-learn", "umap-learn", "torch", "transformers")


def software_versions() -> dict[str, str]:
    """Python and the installed versions of the packages the pipeline uses."""
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def distribution(column: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    """Value counts, largest first (ties by value); nulls counted under "null"."""
    counts = pc.value_counts(pc.fill_null(column.cast(pa.string()), "null")).to_pylist()
    pairs = sorted(((item["values"], item["counts"]) for item in counts), key=lambda kv: (-kv[1], kv[0]))
    return dict(pairs)


def write_card(directory: Path, card: dict, note: str = "") -> None:
    """Write `card` as data_card.json and a readable data_card.md, ending with `note`, into `directory`."""
    (directory / "data_card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    (directory / "data_card.md").write_text(render_markdown(card) + note)


def render_markdown(card: dict) -> str:
    """The card as Markdown: stages, rules, distributions, settings and versions."""
    lines = ["# Data card", "", f"Source: `{card['source']}`", "", "## Rows after each stage", ""]
    lines += _table(("stage", "rows"), card["stages"].items())
    lines += ["", "## Rules", "", f"- Normalised text: {card['normalisation']}."]
    lines += [f"- Stratified sampling on template_name: {card['stratified_rounding']}."]
    lines += [f"- Train/test overlap on normalised (input, output): {card['overlap']}."]
    for title, counts in card["distributions"].items():
        lines += ["", f"## {title.replace('_', ' ').capitalize()}", ""]
        lines += _table(("value", "rows"), counts.items())
    for title in ("settings", "versions"):
        lines += ["", f"## {title.capitalize()}", ""]
        lines += _table(("name", "value"), card[title].items())
    return "\n".join(lines) + "\n"


def _table(header: tuple[str, str], rows) -> list[str]:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---:|"]
    for name, value in rows:
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
        lines.append(f"| {name} | {shown} |")
    return lines
