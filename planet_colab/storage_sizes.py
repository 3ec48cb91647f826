"""How much room an episode takes as float32 arrays, as uint8 arrays and as the compressed .npz on disk.

Measured on the run's real episode files, so the notebooks show the data-pipeline argument for
storing pixels as uint8 and compressing them with numbers rather than claims.
"""

from __future__ import annotations

import os
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from planet_colab import safeio


def _episode_files(episodes: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(episodes, (str, os.PathLike)):
        folder = Path(episodes)
        if not safeio.is_dir(folder):
            raise ValueError(f"episodes: {folder} is not a directory of episode_*.npz files")
        paths = sorted(folder / name for name in safeio.listdir(folder) if fnmatch(name, "episode_*.npz"))
    else:
        paths = [Path(p) for p in episodes]
    if not paths:
        raise ValueError(f"episodes: no episode files found in {episodes}")
    return paths


def storage_size_table(episodes: str | os.PathLike | Sequence[str | os.PathLike],
                       project_to: int = 100) -> list[dict[str, Any]]:
    """Bytes of the real episode files as float32 arrays, as uint8 arrays and as compressed .npz."""
    paths = _episode_files(episodes)
    f32 = u8 = disk = steps = 0
    for path in paths:
        with np.load(path) as ep:
            arrays = {k: ep[k] for k in ep.files}
        if "obs" not in arrays:
            raise ValueError(f"{path}: not an episode file (no 'obs' array)")
        # float32 = what the model trains on: every array, pixels included, 4 bytes per value.
        f32 += sum(a.size * 4 for a in arrays.values())
        u8 += sum(a.nbytes for a in arrays.values())
        disk += safeio.stat(path).st_size
        steps += len(arrays["obs"])
    n = len(paths)
    rows = []
    for name, total in (("float32 arrays (obs in [0, 1])", f32),
                        ("uint8 arrays (obs in 0..255)", u8),
                        ("compressed .npz on disk", disk)):
        rows.append({"format": name, "episodes": n, "steps_per_episode": steps / n,
                     "total_mb": total / 1e6, "per_episode_mb": total / n / 1e6,
                     f"mb_per_{project_to}_episodes": total / n * project_to / 1e6,
                     "times_smaller_than_float32": f32 / total if total else float("nan")})
    return rows


def _number(value: Any) -> str:
    if not isinstance(value, float):
        return str(value)
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"


def format_size_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The storage table as aligned text for print()."""
    if not rows:
        raise ValueError("rows: empty storage table")
    keys = [k for k in rows[0] if k != "format"]
    header = ["format"] + keys
    cells = [[str(r["format"])] + [_number(r[k]) for k in keys] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    line = lambda items: "  ".join(s.ljust(w) if i == 0 else s.rjust(w)  # noqa: E731
                                   for i, (s, w) in enumerate(zip(items, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(c) for c in cells])
