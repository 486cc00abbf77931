"""era_torch.sb3: SAC-ERA and PPO-ERA on Stable-Baselines3 with a MuJoCo task (Hopper-v5):
a few hundred steps of each, the head's entropy floor checked on every batch the policy
sees, save/load of delta and its learner, the policy's predictions, every refusal."""

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3", reason="pip install stable-baselines3==2.9.2")
pytest.importorskip("mujoco", reason="pip install gymnasium[mujoco]==1.4.0 mujoco==4.0.0")
import gymnasium as gym  # noqa: E402
from stable_baselines3.common.env_checker import check_env  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.ppo.policies import ActorCriticPolicy  # noqa: E402
from stable_baselines3.sac.policies import SACPolicy  # noqa: E402

import era_torch  # noqa: E402
from era_torch import sb3  # noqa: E402

TASK, DIM = "Hopper-v5", 3
SMALL = dict(net_arch=[32, 32])  # copied per model: SB3 writes into policy_kwargs


def sac_args(**over):
    """Small SAC settings (a fresh policy_kwargs dict each time)."""
    return {**dict(learning_starts=100, batch_size=32, buffer_size=2000, policy_kwargs=dict(SMALL), seed=0,
                   device="cpu"), **over}


def ppo_args(**over):
    """Small PPO settings (a fresh policy_kwargs dict each time)."""
    return {**dict(n_steps=64, batch_size=32, n_epochs=2, policy_kwargs=dict(SMALL), seed=0, device="cpu"), **over}
TOL = 1e-4  # float32 rounding of a sum of DIM log-stds


class FloorRecorder:
    """A forward hook on an EraGaussian: for every call, the number of rows and the smallest
    ``H(Gaussian) - (target_entropy + delta)`` over them (docs/math.md#gaussian-forward)."""

    def __init__(self, head):
        self.head, self.calls = head, []
        self.handle = head.register_forward_hook(self._hook)

    def _hook(self, module, inputs, out):
        out = out.detach().double()
        rows = out.reshape(-1, out.shape[-1])
        floor = module.target_entropy + float(module.delta)
        self.calls.append((rows.shape[0], float((era_torch.gaussian_entropy(rows) - floor).min())))

    def batches(self, size):
        return [m for n, m in self.calls if n == size]


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread for these small networks (several threads only contend on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def env():
    e = gym.make(TASK)
    yield e
    e.close()


def test_truncation_gap_bound_is_the_library_closed_form():
    assert sb3.truncation_gap_bound(0.0) == pytest.approx(0.853, abs=1e-3)
    assert sb3.truncation_gap_bound(-8.0) == pytest.approx(math.log(2.0), abs=1e-6)  # half the mass cut off
    assert sb3.truncation_gap_bound(2.0) == pytest.approx(2.73, abs=1e-2)


def test_sac_era_learns_delta_and_holds_the_floor_on_every_batch(env):
    model = sb3.SACERA("MlpPolicy", env, **sac_args())
    head = model.actor.era
    assert model.ent_coef_tensor.item() == 0.0 and model.ent_coef_optimizer is None
    assert head.target_entropy == -DIM and model.actor.bounded_policy == "truncnorm"
    start = DIM * sb3.truncation_gap_bound(0.0)
    assert float(head.delta) == pytest.approx(start, abs=1e-6)
    rec = FloorRecorder(head)
    model.learn(300)
    train = rec.batches(32)
    assert model._n_updates >= 150 and len(train) >= 2 * model._n_updates  # observations and next observations
    assert min(m for _, m in rec.calls) >= -TOL
    assert head.learner.delta != pytest.approx(start) and float(head.delta) == pytest.approx(head.learner.delta)
    assert model.logger.name_to_value["train/delta"] == pytest.approx(head.learner.delta)
    assert np.isfinite(model.logger.name_to_value["train/bounded_entropy"])


def test_sac_era_tanh_with_a_fixed_delta(env):
    model = sb3.SACERA("MlpPolicy", env, bounded_policy="tanh", learn_delta=False, delta=0.5,
                       **sac_args(learning_starts=50))
    rec = FloorRecorder(model.actor.era)
    model.learn(150)
    assert model._n_updates >= 90 and rec.batches(32)
    assert min(m for _, m in rec.calls) >= -TOL
    assert model.actor.era.learner.delta == 0.5 and float(model.actor.era.delta) == 0.5


@pytest.mark.parametrize("state_dependent", [False, True])
def test_ppo_era_trains_and_holds_the_floor(env, state_dependent):
    model = sb3.PPOERA("MlpPolicy", env, target_entropy=-1.5, state_dependent_std=state_dependent, **ppo_args())
    policy = model.policy
    assert hasattr(policy, "log_std") != state_dependent and hasattr(policy, "log_std_net") == state_dependent
    z0 = [p.detach().clone() for p in (policy.log_std_net.parameters() if state_dependent else [policy.log_std])]
    rec = FloorRecorder(policy.era)
    model.learn(128)
    assert len(rec.batches(32 if state_dependent else 1)) >= 8  # every minibatch of both epochs
    assert min(m for _, m in rec.calls) >= -TOL
    z1 = list(policy.log_std_net.parameters()) if state_dependent else [policy.log_std]
    assert any(not torch.equal(a, b) for a, b in zip(z0, z1))  # the head's input is trained
    assert np.isfinite(model.logger.name_to_value["train/entropy_loss"])
    if not state_dependent:
        std = torch.exp(policy.era(policy.log_std)).mean().item()
        assert model.logger.name_to_value["train/std"] == pytest.approx(std)


def test_sac_era_save_load_keeps_delta_and_the_learner(env, tmp_path):
    model = sb3.SACERA("MlpPolicy", env, delta_optimizer="adam", delta_lr=0.01, **sac_args(learning_starts=50))
    model.learn(120)
    head = model.actor.era
    state = json.loads(head.learner.to_json())["delta_state"]
    assert state["adam_t"] >= 60 and state["adam_m"] != 0.0
    model.save(tmp_path / "sac_era")
    loaded = sb3.SACERA.load(tmp_path / "sac_era", env=env, device="cpu")
    other = loaded.actor.era
    assert other.learner.to_json() == head.learner.to_json()  # delta, Adam's m, v and t
    assert float(other.delta) == float(head.delta) and other.learner.delta == head.learner.delta
    assert (loaded.bounded_policy, loaded.target_entropy, loaded.delta_optimizer) == ("truncnorm", -3.0, "adam")
    obs = np.stack([env.observation_space.sample() for _ in range(5)])
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    loaded.learn(20, reset_num_timesteps=False)  # goes on training from the restored state
    assert other.learner.to_json() != head.learner.to_json()


def test_ppo_era_save_load(env, tmp_path):
    model = sb3.PPOERA("MlpPolicy", env, target_entropy=-1.5, state_dependent_std=True, delta=0.25, **ppo_args())
    model.learn(64)
    model.save(tmp_path / "ppo_era")
    loaded = sb3.PPOERA.load(tmp_path / "ppo_era", env=env, device="cpu")
    assert loaded.policy.state_dependent_std and loaded.target_entropy == -1.5
    assert loaded.policy.era.learner.to_json() == model.policy.era.learner.to_json()
    assert float(loaded.policy.era.delta) == 0.25
    obs = np.stack([env.observation_space.sample() for _ in range(5)])
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


@pytest.mark.parametrize("make", [
    lambda env: sb3.SACERA("MlpPolicy", env, **sac_args()),
    lambda env: sb3.SACERA("MlpPolicy", env, bounded_policy="tanh", **sac_args()),
    lambda env: sb3.PPOERA("MlpPolicy", env, target_entropy=0.0, **ppo_args()),
], ids=["sac-truncnorm", "sac-tanh", "ppo"])
def test_policy_predictions_have_the_action_space_shape_and_bounds(env, make):
    check_env(env)  # SB3's own check of the environment the policies act in
    model = make(env)
    space = env.action_space
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs)
    assert action.shape == space.shape and space.contains(action.astype(space.dtype))
    batch = np.stack([env.observation_space.sample() for _ in range(64)])
    for deterministic in (False, True):
        actions, _ = model.predict(batch, deterministic=deterministic)
        assert actions.shape == (64, *space.shape)
        assert np.all(actions >= space.low) and np.all(actions <= space.high)
    first = model.predict(batch, deterministic=True)[0]
    np.testing.assert_array_equal(first, model.predict(batch, deterministic=True)[0])
    vec = make_vec_env(TASK, n_envs=2, seed=0)
    actions, _ = model.predict(vec.reset())
    assert actions.shape == (2, *space.shape)
    vec.close()


def test_truncated_normal_distribution():
    dist = sb3.TruncatedNormalDistribution(2)
    mean = torch.tensor([[0.0, 3.0], [-20.0, 0.5]], dtype=torch.float64)
    log_std = torch.tensor([[0.0, -1.0], [-0.5, -6.0]], dtype=torch.float64)
    dist.proba_distribution(mean, log_std)
    torch.testing.assert_close(dist.mode(), torch.tanh(mean))
    torch.manual_seed(0)
    x = torch.stack([dist.sample() for _ in range(4000)])
    assert torch.all(x >= -1) and torch.all(x <= 1)
    lp = dist.log_prob(x)
    assert torch.all(torch.isfinite(lp))
    # the closed-form entropy (the library's) against the Monte Carlo estimate -E[log p]
    np.testing.assert_allclose(dist.entropy().numpy(), (-lp.mean(0)).numpy(), atol=0.06)
    # the density integrates to 1 on [-1, 1]
    grid = torch.linspace(-1, 1, 20001, dtype=torch.float64)[:, None]
    for m, ls in ((0.0, 0.0), (3.0, -1.0), (-20.0, -0.5), (0.5, -6.0)):
        one = sb3.TruncatedNormalDistribution(1).proba_distribution(torch.tensor([m], dtype=torch.float64),
                                                                    torch.tensor([ls], dtype=torch.float64))
        mass = torch.trapezoid(torch.exp(one.log_prob(grid)), grid[:, 0])
        assert float(mass) == pytest.approx(1.0, abs=2e-3 if ls == -6.0 else 1e-5)
    outside = dist.log_prob(torch.tensor([[1.5, 0.0], [0.0, 0.0]], dtype=torch.float64))
    assert outside[0] == -math.inf and torch.isfinite(outside[1])
    # pathwise: gradients reach mean and log_std
    m = mean.clone().requires_grad_(True)
    s = log_std.clone().requires_grad_(True)
    a, logp = sb3.TruncatedNormalDistribution(2).log_prob_from_params(m, s)
    (a.sum() + logp.sum()).backward()
    assert torch.all(torch.isfinite(m.grad)) and torch.all(torch.isfinite(s.grad)) and s.grad.abs().sum() > 0
    layers = dist.proba_distribution_net(5)
    assert [tuple(layer.weight.shape) for layer in layers] == [(2, 5), (2, 5)]


def test_refusals(env):
    with pytest.raises(ValueError, match="no entropy coefficient"):
        sb3.SACERA("MlpPolicy", env, ent_coef=0.1)
    with pytest.raises(ValueError, match="gSDE"):
        sb3.SACERA("MlpPolicy", env, use_sde=True)
    with pytest.raises(ValueError, match="bounded_policy"):
        sb3.SACERA("MlpPolicy", env, bounded_policy="beta")
    with pytest.raises(ValueError, match="SACERAPolicy"):
        sb3.SACERA(SACPolicy, env)
    with pytest.raises(ValueError, match="gSDE"):
        sb3.SACERAPolicy(env.observation_space, env.action_space, lambda _: 3e-4, target_entropy=-3.0, use_sde=True)
    with pytest.raises(ValueError, match="gSDE"):
        sb3.EraActor(env.observation_space, env.action_space, [8], torch.nn.Flatten(), 11, target_entropy=-3.0,
                     use_sde=True)
    with pytest.raises(era_torch.EraError, match="INFEASIBLE"):
        sb3.SACERA("MlpPolicy", env, target_entropy=50.0, learn_delta=False, delta=0.0)
    with pytest.raises(ValueError, match="needs target_entropy"):
        sb3.PPOERA("MlpPolicy", env)
    with pytest.raises(ValueError, match="no entropy bonus"):
        sb3.PPOERA("MlpPolicy", env, target_entropy=0.0, ent_coef=0.01)
    with pytest.raises(ValueError, match="gSDE"):
        sb3.PPOERA("MlpPolicy", env, target_entropy=0.0, use_sde=True)
    with pytest.raises(ValueError, match="EraActorCriticPolicy"):
        sb3.PPOERA(ActorCriticPolicy, env, target_entropy=0.0)
    with pytest.raises(ValueError, match="continuous"):
        sb3.PPOERA("MlpPolicy", gym.make("CartPole-v1"), target_entropy=0.0)
    with pytest.raises(ValueError, match="gSDE"):
        sb3.EraActorCriticPolicy(env.observation_space, env.action_space, lambda _: 3e-4, target_entropy=0.0,
                                 use_sde=True)


def test_era_torch_imports_without_stable_baselines3():
    code = ("import sys; sys.modules['stable_baselines3'] = None\n"
            "import era_torch\n"
            "try:\n    import era_torch.sb3\nexcept ImportError as e:\n    print('refused:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert "refused: era_torch.sb3 needs Stable-Baselines3 (tested with stable-baselines3==2.9.2)" in out.stdout


def _recipe(marker):
    """The ```python block after ``<!-- recipe: marker -->`` in docs/sb3.md."""
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "sb3.md"), encoding="utf-8").read()
    m = re.search(re.escape(f"<!-- recipe: {marker} -->") + r"\s*```python\n(.*?)```", text, re.S)
    assert m, f"docs/sb3.md has no recipe {marker}"
    return m.group(1)


def test_docs_recipes_run_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sac = {}
    exec(compile(_recipe("sb3-sac"), "docs/sb3.md:sb3-sac", "exec"), sac)
    assert isinstance(sac["model"], sb3.SACERA) and (tmp_path / "sac_era_hopper.zip").exists()
    assert sac["action"].shape == (DIM,) and sac["model"].actor.era.learner.delta != pytest.approx(3 * 0.853, abs=1e-3)
    ppo = {}
    exec(compile(_recipe("sb3-ppo"), "docs/sb3.md:sb3-ppo", "exec"), ppo)
    assert ppo["model"].num_timesteps == 512 and ppo["state_dependent"].policy.state_dependent_std
    out = capsys.readouterr().out
    assert "delta" in out and "std" in out
