"""Scale benchmark for `difusi prepare` stages 1-4 on a full-size generated Cendol Collection v2.

Generates the 12,810,390-row, 23-shard collection once (about 900 bytes of text a row; several GB on
disk, kept in DIFUSI_CACHE/synth-cendol-full unless --data says otherwise), then runs read/validate,
subset filter, de-duplication and stratified sampling in a fresh process and prints its wall time, CPU
time and peak resident memory. `--text plain` (the default) is the news corpus, nearly all ASCII;
`--text realistic` gives the rows Wikipedia-like text (curly quotes, dashes, accented and non-Latin
names, emoji, no-break spaces, a few compatibility characters, paragraph breaks) and prints the share of
rows holding a non-ASCII character and a newline. Usage:
python -m difusi.benchmarks.prepare_scale [--data DIR] [--rows N] [--text plain|realistic]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from difusi.io import cache_dir
from difusi.synthetic.cendol import FULL_ROWS, FULL_SHARDS


def measure(data: Path) -> dict:
    """Stages 1-4 with the seed's settings; wall seconds, peak RSS and the stage counts."""
    from difusi.data.prepare import PrepareConfig, sample_candidates
    from difusi.data.source import resolve_source

    logging.basicConfig(
        level=logging.INFO, format="%(relativeCreated)8.0f ms  %(message)s", stream=sys.stderr
    )
    start = time.perf_counter()
    source = resolve_source(data)
    candidates = sample_candidates(source, PrepareConfig())
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    parquet_bytes = sum(path.stat().st_size for path in source.files)
    return {
        "seconds": round(seconds, 1),
        # CPU seconds (user + system, imports included) tell apart a slow run from a busy machine.
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2),
        "source_rows": candidates.scan.source_rows,
        "subset_rows": candidates.scan.subset_rows,
        "empty_dropped": candidates.scan.empty_dropped,
        "unique_rows": int(candidates.unique.sum()),
        "stratified_rows": len(candidates.stratified),
        "parquet_gb": round(parquet_bytes / 1e9, 2),
    }


def text_shares(data: Path) -> dict:
    """Share of rows whose input or output holds a non-ASCII character, a newline, either; bytes a row."""
    from difusi.data.source import resolve_source

    rows = non_ascii = newline = either = text_bytes = 0
    for path in resolve_source(data).files:
        table = pq.read_table(path, columns=["input", "output"])
        flags = {"ascii": [], "newline": []}
        for name in ("input", "output"):
            column = pc.fill_null(table[name], "")
            flags["ascii"].append(pc.string_is_ascii(column))
            flags["newline"].append(pc.match_substring(column, "\n"))
            text_bytes += pc.sum(pc.binary_length(column)).as_py() or 0
        wide = pc.invert(pc.and_(*flags["ascii"]))
        broken = pc.or_(*flags["newline"])
        rows += table.num_rows
        non_ascii += pc.sum(wide).as_py() or 0
        newline += pc.sum(broken).as_py() or 0
        either += pc.sum(pc.or_(wide, broken)).as_py() or 0
    return {
        "non_ascii_share": round(non_ascii / rows, 3),
        "newline_share": round(newline / rows, 3),
        "non_ascii_or_newline_share": round(either / rows, 3),
        "text_bytes_per_row": round(text_bytes / rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="collection directory (generated if absent)")
    parser.add_argument("--rows", type=int, default=FULL_ROWS)
    parser.add_argument(
        "--text", choices=("plain", "realistic"), default="plain", help="generated text (see above)"
    )
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    name = "synth-cendol-full" if args.rows == FULL_ROWS else f"synth-cendol-{args.rows}"
    data = args.data or cache_dir() / (name if args.text == "plain" else f"{name}-realistic")
    if args.measure:
        print(json.dumps(measure(data)))
        return
    if not data.exists():
        from difusi.synthetic.cendol import synth_cendol

        start = time.perf_counter()
        synth_cendol(data, args.rows, seed=0, shards=FULL_SHARDS, realistic=args.text == "realistic")
        print(f"generated {args.rows:,} rows in {time.perf_counter() - start:.0f} s into {data}")
    # Counted once per collection (a full pass over the text) and kept beside the shards.
    shares_file = data / "text_shares.json"
    if not shares_file.exists():
        shares_file.write_text(json.dumps(text_shares(data)))
    shares = json.loads(shares_file.read_text())
    print(
        f"rows with non-ASCII text {shares['non_ascii_share']:.1%}, with a newline "
        f"{shares['newline_share']:.1%}, either {shares['non_ascii_or_newline_share']:.1%}; "
        f"{shares['text_bytes_per_row']} bytes of input and output a row"
    )
    # A fresh process, so peak memory counts only stages 1-4 (not the generator).
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "difusi.benchmarks.prepare_scale",
            "--measure",
            "--data",
            str(data),
            "--rows",
            str(args.rows),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    sys.stderr.write(child.stderr)
    figures = json.loads(child.stdout)
    print(
        f"stages 1-4 on {figures['source_rows']:,} rows ({figures['parquet_gb']} GB of parquet): "
        f"{figures['seconds']} s wall ({figures['cpu_seconds']} CPU s), peak RSS {figures['peak_rss_gb']} GB"
    )
    print(json.dumps(figures | shares, indent=2))


if __name__ == "__main__":
    main()
