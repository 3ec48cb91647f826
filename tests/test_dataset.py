"""EpisodeDataset and collate_episode_batch: the seed's promises, plus cheap refresh and exact resume."""

import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from planet_colab import storage as storage_mod
from planet_colab.dataset import EpisodeDataset, collate_episode_batch
from planet_colab.storage import DamagedEpisodeWarning, EpisodeStorage


def add_counting_episode(store, length, action_dim=1, index=None):
    """An episode whose every field encodes its step number, so slices can be checked for alignment."""
    steps = np.arange(length)
    obs = np.broadcast_to((steps % 256).astype(np.uint8)[:, None, None, None], (length, 64, 64, 3))
    action = np.repeat((steps / 1000.0)[:, None], action_dim, axis=1)
    return store.add_episode(obs, action, steps.astype(np.float32), steps % 7 == 6, index=index)


@pytest.fixture
def store(tmp_path):
    return EpisodeStorage(tmp_path / "episodes")


def loader(dataset, batch_size):
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=True,
                      collate_fn=collate_episode_batch)


def test_five_episodes_give_fifty_full_batches(store):
    for _ in range(5):
        add_counting_episode(store, 30)
    dataset = EpisodeDataset(store, seq_len=25, virtual_len=800, seed=0)
    assert len(dataset) == 800 and len(dataset.episodes) == 5
    batches = list(loader(dataset, 16))
    assert len(batches) == 50
    obs, action, reward, terminal = batches[0]
    assert obs.shape == (25, 16, 64, 64, 3) and obs.dtype == torch.float32 and obs.is_contiguous()
    assert action.shape == (25, 16, 1) and reward.shape == (25, 16) and terminal.shape == (25, 16)
    assert terminal.dtype == torch.bool
    assert 0.0 <= obs.min() and obs.max() <= 1.0


def test_each_sample_is_one_contiguous_slice_with_the_same_start_in_every_field(store):
    add_counting_episode(store, 40, action_dim=2)
    dataset = EpisodeDataset(store, seq_len=10, virtual_len=50, seed=1)
    starts = set()
    for i in range(50):
        obs, action, reward, terminal = dataset[i]
        start = int(reward[0])
        steps = torch.arange(start, start + 10)
        starts.add(start)
        assert torch.equal(reward, steps.float())
        assert torch.allclose(action, (steps / 1000.0)[:, None].float().expand(10, 2))
        assert torch.equal(obs[:, 0, 0, 0], steps.float() / 255.0)
        assert torch.equal(terminal, steps % 7 == 6)
    assert len(starts) > 5 and max(starts) <= 30  # random starts, never past the end


def test_same_seed_gives_the_same_slices_and_a_generator_is_accepted(store):
    for _ in range(3):
        add_counting_episode(store, 30)

    def draws(seed):
        dataset = EpisodeDataset(store, seq_len=5, virtual_len=40, seed=seed)
        return [torch.cat([b[2].flatten() for b in loader(dataset, 4)])]

    assert torch.equal(draws(7)[0], draws(7)[0])
    assert not torch.equal(draws(7)[0], draws(8)[0])
    assert torch.equal(draws(np.random.default_rng(7))[0], draws(7)[0])


def test_new_dataset_sees_new_episodes_but_decodes_only_those(store, monkeypatch):
    for _ in range(4):
        add_counting_episode(store, 12)
    decoded = []
    real_load = np.load

    def counting_load(path, *args, **kwargs):
        decoded.append(path.name)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(storage_mod.np, "load", counting_load)
    first = EpisodeDataset(store, seq_len=5, virtual_len=16, seed=0)
    assert len(decoded) == 4
    add_counting_episode(store, 12)
    second = EpisodeDataset(store, seq_len=5, virtual_len=16, seed=0)
    assert decoded[4:] == ["episode_000005.npz"]
    assert len(second.episodes) == 5
    # One uint8 copy in RAM, shared by every dataset: nothing copied per iteration.
    for a, b in zip(first.episodes, second.episodes):
        assert a["obs"] is b["obs"]


def test_batches_do_not_alias_the_cached_episodes(store):
    add_counting_episode(store, 10)
    dataset = EpisodeDataset(store, seq_len=10, virtual_len=1, seed=0)
    before = {k: v.copy() for k, v in dataset.episodes[0].items()}
    for tensor in dataset[0]:
        tensor.zero_() if tensor.dtype != torch.bool else tensor.fill_(True)
    for k, v in dataset.episodes[0].items():
        np.testing.assert_array_equal(v, before[k])


def test_short_episodes_are_skipped(store):
    add_counting_episode(store, 3)
    add_counting_episode(store, 8)
    dataset = EpisodeDataset(store, seq_len=5, virtual_len=10, seed=0)
    assert [len(ep["reward"]) for ep in dataset.episodes] == [8]
    assert [p.name for p in dataset.short_paths] == ["episode_000001.npz"]


def test_no_episode_long_enough_says_so(store):
    add_counting_episode(store, 3)
    add_counting_episode(store, 4)
    with pytest.raises(ValueError, match=r"No stored episode is long enough for seq_len=25.*\[3, 4\]"):
        EpisodeDataset(store, seq_len=25, virtual_len=800)


def test_empty_storage_says_to_collect_first(store):
    with pytest.raises(ValueError, match="No episodes stored.*collect"):
        EpisodeDataset(store, seq_len=25, virtual_len=800)


def test_max_index_keeps_exactly_the_episodes_up_to_that_number(store):
    for _ in range(6):
        add_counting_episode(store, 10)
    dataset = EpisodeDataset(store, seq_len=5, virtual_len=8, seed=0, max_index=4)
    assert [p.name for p in dataset.episode_paths] == [f"episode_{i:06d}.npz" for i in range(1, 5)]
    with pytest.raises(ValueError, match="No episodes stored"):
        EpisodeDataset(store, seq_len=5, virtual_len=8, max_index=0)


def test_damaged_file_is_skipped_and_training_goes_on(store):
    add_counting_episode(store, 10)
    store.path_for(2).write_bytes(b"half a file")
    add_counting_episode(store, 10, index=3)
    with pytest.warns(DamagedEpisodeWarning, match="episode_000002"):
        dataset = EpisodeDataset(store, seq_len=5, virtual_len=32, seed=0)
    assert len(dataset.episodes) == 2
    assert len(list(loader(dataset, 16))) == 2
    assert (store.quarantine_dir / "episode_000002.npz").exists()


@pytest.mark.parametrize("kwargs, field", [
    ({"seq_len": 0}, "seq_len"), ({"virtual_len": -1}, "virtual_len"), ({"seed": "abc"}, "seed"),
])
def test_bad_arguments_name_the_field(store, kwargs, field):
    add_counting_episode(store, 10)
    with pytest.raises(ValueError, match=field):
        EpisodeDataset(store, **{"seq_len": 5, "virtual_len": 8, **kwargs})


def test_collate_is_time_first():
    batch = [(torch.full((3, 64, 64, 3), float(b)), torch.zeros(3, 2), torch.arange(3.0) + 10 * b,
              torch.zeros(3, dtype=torch.bool)) for b in range(4)]
    obs, action, reward, terminal = collate_episode_batch(batch)
    assert obs.shape == (3, 4, 64, 64, 3) and action.shape == (3, 4, 2)
    assert reward.shape == (3, 4) and terminal.shape == (3, 4)
    assert torch.equal(reward[1], torch.tensor([1.0, 11.0, 21.0, 31.0]))  # obs_seq[t] = batch at time t
    assert torch.equal(obs[2, 3], torch.full((64, 64, 3), 3.0))


def test_only_damaged_files_says_where_they_went(store):
    store.path_for(1).write_bytes(b"not an episode")
    with pytest.warns(DamagedEpisodeWarning), pytest.raises(ValueError, match="1 damaged file.*quarantine"):
        EpisodeDataset(store, seq_len=5, virtual_len=8)


def test_projected_ram_counts_every_episode_of_the_run_and_warns_past_half_the_memory():
    from planet_colab.config import get_config
    from planet_colab.dataset import project_episode_ram

    cheetah = get_config("half_cheetah")  # 1000 frames of 64×64×3 per episode: 12.3 MB
    total, line = project_episode_ram(cheetah, action_dim=6, memory_bytes=64 * 10**9)
    episodes = cheetah.seed_episodes + cheetah.total_iterations * cheetah.collect_episodes
    assert total == episodes * 1000 * (64 * 64 * 3 + 6 * 4 + 4 + 1)
    assert f"{episodes} episodes" in line and "12.3 MB" in line
    long_run = cheetah.replace(total_iterations=1000)  # 1005 episodes: 12.4 GB, over half of Colab's 12 GB
    # Only what a resume may change is offered as the way out; the fixed fields are for a new run.
    with pytest.warns(UserWarning, match=r"lower total_iterations \(--iterations\), or for a new run collect_ep"):
        project_episode_ram(long_run, action_dim=6, memory_bytes=12 * 10**9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        project_episode_ram(long_run, action_dim=6, memory_bytes=32 * 10**9)
