"""Config: presets validate, JSON round-trip, clear validation messages, command-line overrides."""

import dataclasses

import pytest

from planet_colab.config import PAPER_SIZES, PRESETS, Config, get_config, parse_override


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_validates(preset):
    config = get_config(preset)
    assert config.preset == preset
    assert config.seq_len <= config.episode_len
    assert config.virtual_len == config.batch_size * config.train_steps


def test_seed_sizes_are_the_default():
    config = Config()
    assert (config.batch_size, config.seq_len, config.train_steps, config.seed_episodes) == (16, 25, 50, 5)
    assert config.virtual_len == 800 and config.episode_len == 100  # Pendulum: 200 steps / repeat 2
    # The pendulum preset keeps the seed's batch shape and doubles the gradient steps per episode.
    pendulum = get_config("pendulum")
    assert (pendulum.batch_size, pendulum.seq_len, pendulum.train_steps) == (16, 25, 100)
    assert get_config("pendulum", action_repeat=3).episode_len == 67  # a partial last step still counts


def test_json_round_trip(tmp_path):
    config = get_config("smoke", seed=3, learning_rate=3e-4, precision="bf16")
    path = tmp_path / "config.json"
    config.save(path)
    assert Config.load(path) == config
    assert Config.from_dict(config.to_dict()) == config
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temporary left behind


def test_overrides_apply_on_top_of_the_preset():
    config = get_config("smoke", batch_size=2)
    assert config.batch_size == 2 and config.cnn_depth == PRESETS["smoke"]["cnn_depth"]
    assert config.replace(seed=9).seed == 9 and config.seed == 0


@pytest.mark.parametrize("changes, message", [
    ({"seq_len": 101}, r"seq_len \(101\) is longer than an episode \(100 agent steps"),
    ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
    ({"seq_len": 1}, "seq_len must be at least 2"),  # reward(s_t) learns r_(t-1): one step has no pair
    ({"top_k": 2000}, r"top_k \(2000\) must not exceed candidates \(500\)"),
    ({"seed_episodes": 0}, "seed_episodes must be at least 1"),
    ({"precision": "fp8"}, "precision must be one of"),
    ({"image_size": 32}, "image_size must be 64"),
    ({"learning_rate": 0.0}, "learning_rate must be > 0"),
    ({"free_nats": -1.0}, "free_nats must be >= 0"),
    ({"kl_balance": 1.0}, r"kl_balance must be in \(0, 1\)"),
    ({"action_repeat": "2"}, "action_repeat must be a positive integer, got '2'"),
    ({"bit_depth": "5"}, "bit_depth must be an integer in 1..8"),
    ({"learning_rate": "fast"}, "learning_rate must be > 0, got 'fast'"),
])
def test_validation_names_the_field_and_the_problem(changes, message):
    with pytest.raises(ValueError, match=message):
        get_config("pendulum", **changes)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ValueError) as info:
        get_config("pendulum", batch_size=0, horizon=-1)
    assert "batch_size" in str(info.value) and "horizon" in str(info.value)


def test_unknown_fields_and_presets_are_refused(tmp_path):
    with pytest.raises(ValueError, match="Unknown config field.*batch_sise"):
        get_config("pendulum", batch_sise=8)
    with pytest.raises(ValueError, match="Unknown config field.*colour"):
        Config.from_dict({**Config().to_dict(), "colour": "red"})
    with pytest.raises(ValueError, match="Unknown preset 'atari'"):
        get_config("atari")
    broken = tmp_path / "config.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Config.load(broken)


def test_parse_override_types_values_like_the_field():
    assert parse_override("batch_size=8") == ("batch_size", 8)
    assert parse_override("learning_rate=3e-4") == ("learning_rate", 3e-4)
    assert parse_override("precision=bf16") == ("precision", "bf16")
    assert parse_override(" seed =2") == ("seed", 2)
    key, value = parse_override("env_name=Pendulum-v1")
    assert get_config("smoke", **{key: value}).env_name == "Pendulum-v1"


@pytest.mark.parametrize("text, message", [
    ("batch_size", "Expected key=value"),
    ("batch_sise=8", "Unknown config field 'batch_sise'"),
    ("batch_size=eight", "batch_size expects int, got 'eight'"),
])
def test_parse_override_refuses_bad_text(text, message):
    with pytest.raises(ValueError, match=message):
        parse_override(text)


def test_the_list_of_known_fields_offers_only_what_set_accepts():
    with pytest.raises(ValueError) as refused:
        parse_override("batch_sise=8")
    known = str(refused.value).split("known: ")[1].split(", ")
    assert "batch_size" in known and "preset" not in known  # --set preset= is refused: it is not offered


def test_every_field_has_a_default():
    assert all(f.default is not dataclasses.MISSING for f in dataclasses.fields(Config))
    Config().validate()


def test_the_planner_warm_start_is_opt_in_and_checked():
    from planet_colab.config import parse_override

    # Off in every preset: on cartpole it fell behind the cold CEM by 45 episodes (docs/results/cost.md).
    assert not Config().plan_warm_start and not get_config("pendulum").plan_warm_start
    assert not get_config("cartpole_swingup").plan_warm_start
    assert parse_override("plan_warm_start=true") == ("plan_warm_start", True)
    assert parse_override("plan_warm_start=0") == ("plan_warm_start", False)
    with pytest.raises(ValueError, match="plan_warm_start expects true or false, got 'maybe'"):
        parse_override("plan_warm_start=maybe")
    with pytest.raises(ValueError, match="plan_warm_start must be true or false"):
        get_config("smoke", plan_warm_start="yes")
    with pytest.raises(ValueError, match="plan_warm_std must be > 0"):
        get_config("smoke", plan_warm_std=0.0)


@pytest.mark.parametrize("task", ["cartpole_swingup", "reacher_easy", "cheetah_run", "finger_spin", "cup_catch",
                                  "walker_walk", "half_cheetah"])
def test_task_presets_are_the_cpu_recipe_and_the_papers_sizes_are_one_switch_away(task):
    config = get_config(task)
    # The recipe that learned cartpole here (docs/results/cost.md says what cheaper ones cost in learning),
    # with more gradient steps per episode where the benchmark showed the task needs them (its sweep.md).
    train_steps = {"cup_catch": 200, "finger_spin": 200}.get(task, 100)
    assert (config.batch_size, config.seq_len, config.train_steps, config.cnn_depth) == (16, 25, train_steps, 32)
    assert (config.free_nats, config.kl_balance) == (1.0, 0.8)
    # PlaNet's 10 refits where the action has six dimensions: at 5 the plan's mean action was shrunk (config.py).
    refits = {"cheetah_run": 10, "walker_walk": 10, "half_cheetah": 10}.get(task, 5)
    assert (config.candidates, config.optim_iters, config.top_k, config.plan_warm_start) == (500, refits, 50, False)
    paper = get_config(task, **PAPER_SIZES)
    assert (paper.batch_size, paper.seq_len, paper.train_steps, paper.cnn_depth) == (50, 50, 100, 32)
    assert (paper.candidates, paper.optim_iters, paper.top_k, paper.plan_warm_start) == (1000, 10, 100, False)
    assert (paper.free_nats, paper.kl_balance) == (3.0, 0.5)  # PlaNet's KL: 3 free nats, plain
    assert (paper.env_name, paper.action_repeat) == (config.env_name, config.action_repeat)  # the task stays
