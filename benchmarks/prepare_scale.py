"""Scale benchmark for `difusi prepare` stages 1-4 on a full-size generated Cendol Collection v2.

Generates the 12,810,390-row, 23-shard collection once (about 900 bytes of text a row; several GB on
disk, kept in DIFUSI_CACHE/synth-cendol-full unless --data says otherwise), then runs read/validate,
subset filter, de-duplication and stratified sampling in a fresh process and prints its wall time and
peak resident memory. Usage: python benchmarks/prepare_scale.py [--data DIR] [--rows N]
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

from difusi.corpus import cache_dir
from difusi.data.synth import FULL_ROWS, FULL_SHARDS


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="collection directory (generated if absent)")
    parser.add_argument("--rows", type=int, default=FULL_ROWS)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    data = args.data or cache_dir() / (
        "synth-cendol-full" if args.rows == FULL_ROWS else f"synth-cendol-{args.rows}"
    )
    if args.measure:
        print(json.dumps(measure(data)))
        return
    if not data.exists():
        from difusi.data.synth import synth_cendol

        start = time.perf_counter()
        synth_cendol(data, args.rows, seed=0, shards=FULL_SHARDS)
        print(f"generated {args.rows:,} rows in {time.perf_counter() - start:.0f} s into {data}")
    # A fresh process, so peak memory counts only stages 1-4 (not the generator).
    child = subprocess.run(
        [sys.executable, __file__, "--measure", "--data", str(data), "--rows", str(args.rows)],
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
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
