"""The playground images the benchmarks read (../shared/data/playground, never copied)."""

import sys
from pathlib import Path

PLAYGROUND = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "playground"


def playground_paths(kind="*"):
    """Sorted JPEG paths of ``kind`` ("real", "ai" or "*" for both); exits when absent."""
    paths = sorted(str(p) for p in PLAYGROUND.glob(f"{kind}/*.jpg"))
    if not paths:
        sys.exit(f"No images found in {PLAYGROUND}; the benchmark needs the playground data.")
    return paths


def cycle(paths, n):
    """``n`` paths, repeating ``paths`` as often as needed."""
    return [paths[i % len(paths)] for i in range(n)]
