"""EpisodeDataset (RAM cache, virtual length, random subsequences) and collate_episode_batch.

Why each of these: docs/design.md §5–§7. Build a new EpisodeDataset at the start of every iteration
so newly collected episodes enter training (docs/design.md §8). Decoded episodes live in the
EpisodeStorage's cache, so a rebuild decodes only files it has not seen and every dataset shares one
uint8 copy of each episode in RAM.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from planet_colab.checks import positive_int
from planet_colab.config import Config
from planet_colab.storage import DamagedEpisodeError, EpisodeStorage, episode_number
from planet_colab.words import format_bytes, plural

Sample = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class EpisodeDataset(Dataset):
    """`virtual_len` random `seq_len`-step slices of the stored episodes (index ignored, docs/design.md §6).

    `seed` (int, np.random.Generator or None) is the only source of randomness: the same seed and
    the same episodes give the same sequence of slices, which is what an exact resume needs.
    `max_index` keeps only episodes numbered <= max_index (the episodes an uninterrupted run had).
    Use it with `DataLoader(..., shuffle=False, num_workers=0)`: each worker would copy the generator
    and draw the same slices, and slicing RAM is too cheap for workers to help.
    """

    def __init__(self, storage: EpisodeStorage, seq_len: int, virtual_len: int,
                 seed: int | np.random.Generator | None = None, *, max_index: int | None = None) -> None:
        self.storage = storage
        self.seq_len = positive_int("seq_len", seq_len)
        self.virtual_len = positive_int("virtual_len", virtual_len)
        if max_index is not None and (not isinstance(max_index, (int, np.integer)) or max_index < 0):
            raise ValueError(f"max_index must be a non-negative integer or None, got {max_index!r}")
        if seed is not None and not isinstance(seed, (int, np.integer, np.random.Generator)):
            raise ValueError(f"seed must be an int, a numpy Generator or None, got {type(seed).__name__}")
        self.rng = np.random.default_rng(seed)  # a Generator passed in is used (and advanced) as is

        all_paths = storage.episode_paths
        paths = [p for p in all_paths if max_index is None or episode_number(p) <= max_index]
        self.episodes: list[dict[str, np.ndarray]] = []
        self.episode_paths = []
        self.short_paths = []  # stored, but shorter than seq_len
        unreadable = 0
        for path in paths:
            try:
                episode = storage.load_cached(path)  # decodes only files not cached yet
            except (DamagedEpisodeError, FileNotFoundError):
                unreadable += 1  # quarantined (and warned about) or moved away since listing
                continue
            if len(episode["reward"]) < self.seq_len:
                self.short_paths.append(path)
                continue
            self.episodes.append(episode)
            self.episode_paths.append(path)
        storage.forget(keep=all_paths)  # free RAM of files that were quarantined or removed

        if not self.episodes:
            where = storage.episode_dir if max_index is None else f"{storage.episode_dir} (numbers <= {max_index})"
            if len(paths) == unreadable:
                damaged = (f" ({unreadable} damaged file(s) moved to {storage.quarantine_dir})"
                           if unreadable else "")
                raise ValueError(f"No episodes stored in {where}{damaged}; collect seed episodes first "
                                 "(planet_colab.env.collect_seed_episodes)")
            lengths = [len(storage.load_cached(p)["reward"]) for p in self.short_paths]
            raise ValueError(f"No stored episode is long enough for seq_len={self.seq_len}: "
                             f"{len(paths)} file(s) in {where}, usable lengths {lengths}. "
                             "Lower seq_len or collect longer episodes.")
        action_dims = {ep["action"].shape[1] for ep in self.episodes}
        if len(action_dims) > 1:
            by_dim = {d: [p.name for p, ep in zip(self.episode_paths, self.episodes)
                          if ep["action"].shape[1] == d][:3] for d in sorted(action_dims)}
            raise ValueError(f"Stored episodes have different action sizes {by_dim}; "
                             "were episodes of different environments put in one run directory?")

    @property
    def num_steps(self) -> int:
        """Total steps over the usable episodes."""
        return sum(len(ep["reward"]) for ep in self.episodes)

    @property
    def action_dim(self) -> int:
        """Size of the stored actions."""
        return int(self.episodes[0]["action"].shape[1])

    def __len__(self) -> int:
        return self.virtual_len

    def __repr__(self) -> str:
        return (f"EpisodeDataset(episodes={len(self.episodes)}, steps={self.num_steps}, "
                f"seq_len={self.seq_len}, virtual_len={self.virtual_len})")

    def __getitem__(self, index: int) -> Sample:
        """Random slice, index ignored: obs float32 [0,1] (T,64,64,3), action (T,A), reward, terminal (T,)."""
        info = get_worker_info()
        if info is not None and info.num_workers > 1:
            raise ValueError("EpisodeDataset must be loaded with num_workers=0 or 1: every worker would "
                             "copy the random generator and draw the same slices")
        episode = self.episodes[self.rng.integers(len(self.episodes))]
        start = int(self.rng.integers(len(episode["reward"]) - self.seq_len + 1))
        window = slice(start, start + self.seq_len)
        obs = episode["obs"][window].astype(np.float32)  # only the slice is converted
        obs /= 255.0
        # Copies, so a caller editing a batch in place cannot corrupt the shared cache.
        return (torch.from_numpy(obs),
                torch.from_numpy(episode["action"][window].copy()),
                torch.from_numpy(episode["reward"][window].copy()),
                torch.from_numpy(episode["terminal"][window].copy()))


def collate_episode_batch(batch: Sequence[Sample]) -> Sample:
    """Stack B samples time-first: obs (T, B, 64, 64, 3), action (T, B, A), reward (T, B), terminal (T, B)."""
    if len(batch) == 0:
        raise ValueError("collate_episode_batch: empty batch")
    obs, action, reward, terminal = zip(*batch)
    # Stacking on dim 1 gives the time-first layout directly and contiguous (a permute would not be).
    return (torch.stack(obs, dim=1),       # (T, B, 64, 64, 3)
            torch.stack(action, dim=1),    # (T, B, A)
            torch.stack(reward, dim=1),    # (T, B)
            torch.stack(terminal, dim=1))  # (T, B)


def episode_bytes(config: Config, action_dim: int = 1) -> int:
    """RAM one stored episode takes in the cache: uint8 frames plus float32 actions/rewards, bool terminals."""
    frame = config.image_size * config.image_size * 3
    return config.episode_len * (frame + 4 * action_dim + 4 + 1)


def machine_memory_bytes() -> int:
    """Physical memory, or the container's cgroup limit when that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def project_episode_ram(config: Config, action_dim: int = 1, memory_bytes: int | None = None,
                        *, warn: bool = True) -> tuple[int, str]:
    """Bytes the RAM cache will hold once every episode of the run is stored, and a line saying so.

    The cache keeps every episode (seed_episodes + total_iterations × collect_episodes); past half of
    the machine's memory (Colab: 12 GB) it warns, naming the settings that shrink it.
    """
    episodes = config.seed_episodes + config.total_iterations * config.collect_episodes
    per_episode = episode_bytes(config, action_dim)
    total = episodes * per_episode
    memory = machine_memory_bytes() if memory_bytes is None else memory_bytes
    line = (f"Episode cache: {plural(episodes, 'episode')} × {format_bytes(per_episode)} = {format_bytes(total)} "
            f"of RAM by the end of the run ({memory / 1e9:.1f} GB on this machine)")
    if warn and total > memory / 2:
        warnings.warn(f"the run's episodes will need {total / 1e9:.1f} GB of RAM, more than half of this "
                      f"machine's {memory / 1e9:.1f} GB; lower total_iterations (--iterations), or for a "
                      "new run collect_episodes or the episode length (max_episode_steps / action_repeat), "
                      "which a run keeps", stacklevel=2)
    return total, line
