"""Parse the bundled Bach chorales once and write the piano-roll cache the chorales task reads.

    python -m rnnsweep.data.prepare_chorales [--out data/cache/chorales.npz] [--max-chorales N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rnnsweep.data.chorales import (
    ChoralesDataConfig,
    chorale_names,
    drop_duplicate_rolls,
    piano_roll,
    save_cache,
)
from rnnsweep.data.paths import resolve_path


def prepare(out: Path, max_chorales: int | None = None, quiet: bool = False) -> int:
    """Convert the chorales to piano rolls and write `out`; returns how many were written."""
    from music21 import corpus

    names = chorale_names()[:max_chorales]
    kept, rolls = [], []
    started = time.perf_counter()
    for i, name in enumerate(names, 1):
        roll = piano_roll(corpus.parse(name))
        if len(roll) >= 2:  # next-frame prediction needs two frames
            kept.append(name)
            rolls.append(roll)
        if not quiet and i % 25 == 0:
            print(f"{i}/{len(names)} chorales parsed", file=sys.stderr)
    kept, rolls, dropped = drop_duplicate_rolls(kept, rolls)
    save_cache(out, kept, rolls, dropped)
    if not quiet:
        frames = sum(len(r) for r in rolls)
        print(f"wrote {out}: {len(kept)} chorales, {frames} frames, {dropped} duplicate "
              f"chorales dropped, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return len(kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--out", default=ChoralesDataConfig.cache,
                        help="cache file; relative paths resolve against the project root")
    parser.add_argument("--max-chorales", type=int, default=None,
                        help="convert only the first N chorales (tests)")
    args = parser.parse_args(argv)
    if args.max_chorales is not None and args.max_chorales < 3:
        parser.error("--max-chorales must be >= 3")
    prepare(resolve_path(args.out), args.max_chorales)
    return 0


if __name__ == "__main__":
    sys.exit(main())
