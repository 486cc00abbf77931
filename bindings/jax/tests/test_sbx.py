"""era_jax.sbx: SAC-ERA and PPO-ERA on SBX with a MuJoCo task (Hopper-v5): a few hundred
steps of each, the head's entropy floor checked inside the jitted updates on every batch
the actor sees, delta as traced state of the train state, save/load, predictions, refusals."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sbx", reason="pip install sbx-rl==0.28.0")
pytest.importorskip("mujoco", reason="pip install gymnasium[mujoco]==1.4.0 mujoco==4.0.0")
import flax.linen as nn  # noqa: E402
import gymnasium as gym  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from sbx.ppo.policies import PPOPolicy  # noqa: E402
from sbx.sac.policies import SACPolicy  # noqa: E402
from stable_baselines3.common.env_checker import check_env  # noqa: E402

import era_jax  # noqa: E402
from era_jax import sbx  # noqa: E402

TASK, DIM = "Hopper-v5", 3
TOL = 1e-4  # float32 rounding of a sum of DIM log-stds
MARGINS = []  # (rows, smallest H(Gaussian) - (H0 + delta)) of every actor call, from inside jit


def _record(rows, margin):
    MARGINS.append((int(rows), float(margin)))


def _check(era, dist, delta):
    """Sends the smallest margin of the head's guarantee over the call's rows to the host."""
    d = era.initial_delta if delta is None else (delta.delta if isinstance(delta, era_jax.DeltaState) else delta)
    margin = era_jax.gaussian_entropy(dist.log_std) - (era.target_entropy + d)
    jax.debug.callback(_record, margin.size, jnp.min(margin))


class CheckedActor(sbx.EraActor):
    """EraActor reporting the entropy floor's margin of every call."""

    @nn.compact
    def __call__(self, x, delta=None):
        dist = super().__call__(x, delta)
        _check(self.era, dist, delta)
        return dist


class CheckedPPOActor(sbx.EraPPOActor):
    """EraPPOActor reporting the entropy floor's margin of every call."""

    @nn.compact
    def __call__(self, x):
        dist = super().__call__(x)
        era = self.era
        margin = dist.entropy() - (era.target_entropy + era.initial_delta)
        jax.debug.callback(_record, margin.size, jnp.min(margin))
        return dist


def small(**over):
    """Small networks (a fresh policy_kwargs dict each time: SB3 writes into it)."""
    return {"net_arch": [32, 32], **over}


@pytest.fixture
def env():
    e = gym.make(TASK)
    yield e
    e.close()


@pytest.fixture(autouse=True, scope="module")
def x64_off():
    """SBX runs in JAX's default float32 mode (its optimizer state mixes dtypes under x64,
    which conftest.py turns on for the other tests)."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    yield
    jax.config.update("jax_enable_x64", before)


@pytest.fixture(autouse=True)
def margins():
    MARGINS.clear()
    yield MARGINS
    MARGINS.clear()


def _sane_predictions(model, env):
    """SB3's check of the environment, then the policy's predictions: shapes, bounds, repeatability."""
    check_env(env)
    space = env.action_space
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs)
    assert action.shape == space.shape and space.contains(action.astype(space.dtype))
    batch = np.stack([env.observation_space.sample() for _ in range(64)])
    for deterministic in (False, True):
        actions, _ = model.predict(batch, deterministic=deterministic)
        assert actions.shape == (64, *space.shape)
        assert np.all(actions >= space.low) and np.all(actions <= space.high)
    np.testing.assert_array_equal(model.predict(batch, deterministic=True)[0],
                                  model.predict(batch, deterministic=True)[0])


def test_sac_era_learns_delta_in_the_train_state_and_holds_the_floor(env, tmp_path, margins):
    default = sbx.SACERA("MlpPolicy", env, buffer_size=100, policy_kwargs=small()).era
    assert (default.mode, default.policy, default.target_entropy, default.optimizer, default.lr) == \
        ("bounded", "truncnorm", -3.0, "sgd", 0.5)
    model = sbx.SACERA("MlpPolicy", env, delta_optimizer="adam", delta_lr=0.01, learning_starts=50, batch_size=32,
                       buffer_size=2000, seed=0, policy_kwargs=small(actor_class=CheckedActor))
    era = model.era
    assert (era.optimizer, era.lr, era.initial_delta) == ("adam", 0.01, default.initial_delta)
    state = model.policy.actor_state
    assert isinstance(state, sbx.EraActorState) and state.era == era
    assert float(state.delta.delta) == pytest.approx(era.initial_delta, rel=1e-6)
    model.learn(150)
    train = [m for n, m in margins if n == 32]
    assert model._n_updates >= 90 and len(train) >= 2 * model._n_updates  # actor and critic batches
    assert min(m for _, m in margins) >= -TOL
    delta = model.policy.actor_state.delta
    assert isinstance(delta.delta, jax.Array) and float(delta.delta) != pytest.approx(era.initial_delta)
    assert int(delta.adam_t) == model._n_updates and float(delta.adam_m) != 0.0
    assert model.logger.name_to_value["train/delta"] == pytest.approx(float(delta.delta))
    assert np.isfinite(model.logger.name_to_value["train/bounded_entropy"])
    assert "train/ent_coef" not in model.logger.name_to_value
    _sane_predictions(model, env)

    model.save(tmp_path / "sac_era")
    loaded = sbx.SACERA.load(tmp_path / "sac_era", env=env)
    assert loaded.era == era
    for a, b in zip(loaded.policy.actor_state.delta, delta):  # delta, Adam's m, v and t
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    obs = np.stack([env.observation_space.sample() for _ in range(5)])
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_sac_era_tanh_with_a_fixed_delta(env, margins):
    model = sbx.SACERA("MlpPolicy", env, bounded_policy="tanh", learn_delta=False, delta=0.5, learning_starts=50,
                       batch_size=32, buffer_size=2000, seed=1, policy_kwargs=small(actor_class=CheckedActor))
    assert (model.era.policy, model.era.optimizer) == ("tanh", "fixed")
    model.learn(100)
    assert model._n_updates >= 40 and min(m for _, m in margins) >= -TOL
    assert float(model.policy.actor_state.delta.delta) == 0.5
    assert np.isfinite(model.logger.name_to_value["train/bounded_entropy"])


def test_ppo_era_trains_and_holds_the_floor(env, tmp_path, margins):
    """The state-dependent log-std (the state-independent one runs in the docs recipe below)."""
    model = sbx.PPOERA("MlpPolicy", env, target_entropy=-1.5, state_dependent_std=True, delta=0.25,
                       n_steps=64, batch_size=32, n_epochs=2, seed=0, policy_kwargs=small(actor_class=CheckedPPOActor))
    assert (model.era.mode, model.era.target_entropy, model.era.initial_delta) == ("gaussian", -1.5, 0.25)
    params0 = model.policy.actor_state.params
    model.learn(128)
    assert len([m for n, m in margins if n == 32]) >= 8  # every minibatch of both epochs, both rollouts
    assert min(m for _, m in margins) >= -TOL
    params = model.policy.actor_state.params["params"]
    assert "log_std_net" in params and "log_std" not in params
    changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), params0["params"]["log_std_net"],
                                     params["log_std_net"])
    assert any(jax.tree_util.tree_leaves(changed))  # the head's input is trained
    assert np.isfinite(model.logger.name_to_value["train/entropy_loss"])
    _sane_predictions(model, env)
    model.save(tmp_path / "ppo_era")
    loaded = sbx.PPOERA.load(tmp_path / "ppo_era", env=env)
    assert loaded.era == model.era and loaded.state_dependent_std
    obs = np.stack([env.observation_space.sample() for _ in range(5)])
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_refusals(env):
    with pytest.raises(ValueError, match="no entropy coefficient"):
        sbx.SACERA("MlpPolicy", env, ent_coef=0.1)
    with pytest.raises(ValueError, match="gSDE"):
        sbx.SACERA("MlpPolicy", env, use_sde=True)
    with pytest.raises(ValueError, match="policy must be one of"):
        sbx.SACERA("MlpPolicy", env, bounded_policy="beta")
    with pytest.raises(ValueError, match="SACERAPolicy"):
        sbx.SACERA(SACPolicy, env)
    with pytest.raises(TypeError, match="actor_class"):
        sbx.SACERA("MlpPolicy", env, policy_kwargs={"actor_class": sbx.EraPPOActor})
    with pytest.raises(TypeError, match="GaussianEra"):
        sbx.SACERAPolicy(env.observation_space, env.action_space, lambda _: 3e-4, era={"dim": 3})
    with pytest.raises(ValueError, match="gSDE"):
        sbx.SACERAPolicy(env.observation_space, env.action_space, lambda _: 3e-4,
                         era=era_jax.GaussianEra(3, -3.0, mode="bounded"), use_sde=True)
    with pytest.raises(era_jax.EraError, match="INVALID_CONFIG"):
        sbx.SACERA("MlpPolicy", env, log_std_min=0.0, log_std_max=-1.0)
    with pytest.raises(ValueError, match="needs target_entropy"):
        sbx.PPOERA("MlpPolicy", env)
    with pytest.raises(ValueError, match="no entropy bonus"):
        sbx.PPOERA("MlpPolicy", env, target_entropy=0.0, ent_coef=0.01)
    with pytest.raises(ValueError, match="gSDE"):
        sbx.PPOERA("MlpPolicy", env, target_entropy=0.0, use_sde=True)
    with pytest.raises(ValueError, match="PPOERAPolicy"):
        sbx.PPOERA(PPOPolicy, env, target_entropy=0.0)
    with pytest.raises(ValueError, match="continuous"):
        sbx.PPOERA("MlpPolicy", gym.make("CartPole-v1"), target_entropy=0.0)
    era = era_jax.GaussianEra(3, 0.0, mode="gaussian")
    with pytest.raises(ValueError, match="continuous"):
        sbx.PPOERAPolicy(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(3), lambda _: 3e-4, era=era)
    with pytest.raises(ValueError, match="features extractor"):
        sbx.PPOERAPolicy(env.observation_space, env.action_space, lambda _: 3e-4, era=era,
                         features_extractor_class=object)
    with pytest.raises(ValueError, match="gSDE"):
        sbx.PPOERAPolicy(env.observation_space, env.action_space, lambda _: 3e-4, era=era, use_sde=True)


def test_era_jax_imports_without_sbx():
    code = ("import sys; sys.modules['sbx'] = None\n"
            "import era_jax\n"
            "try:\n    import era_jax.sbx\nexcept ImportError as e:\n    print('refused:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert "refused: era_jax.sbx needs SBX (tested with sbx-rl==0.28.0)" in out.stdout


def test_docs_recipe_runs_as_written(capsys):
    """The SBX block of docs/sb3.md (after ``<!-- recipe: sbx -->``), run as written."""
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "sb3.md"), encoding="utf-8").read()
    m = re.search(re.escape("<!-- recipe: sbx -->") + r"\s*```python\n(.*?)```", text, re.S)
    assert m, "docs/sb3.md has no recipe sbx"
    ns = {}
    exec(compile(m.group(1), "docs/sb3.md:sbx", "exec"), ns)
    assert isinstance(ns["model"].policy.actor_state, sbx.EraActorState) and ns["model"]._n_updates >= 190
    ppo = ns["ppo"]
    assert ppo.num_timesteps == 512 and ppo.era.mode == "gaussian" and not ppo.state_dependent_std
    # the state-independent log-std: every state's Gaussian has exactly the floor's entropy
    assert ppo.logger.name_to_value["train/entropy_loss"] == pytest.approx(1.5, abs=1e-4)
    std = float(jnp.exp(ppo.era.log_std(ppo.policy.actor_state.params["params"]["log_std"])).mean())
    assert ppo.logger.name_to_value["train/std"] == pytest.approx(std)
    out = capsys.readouterr().out
    assert "GaussianEra(" in out and "DeltaState(" in out
