"""Tests of the SAC / SAC-ERA agent (sac_era.py): the policy pieces against
independent formulas, ERA's per-row guarantee inside the agent, one update of
each agent, and a short end-to-end run with its logs, report and plot. The
tooling (sac_run.py, sac_tools.py, compare.sh) has its own tests in
test_sac_tools.py."""

import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import sac_era as S  # noqa: E402
import sac_run as R  # noqa: E402
import sac_tools as T  # noqa: E402

L2PE = math.log(2.0 * math.pi * math.e)  # the reference formula's constant (docs/math.md)


def _era_cfg(**kw):
    return S.Config(agent="sac-era", **kw)


def test_era_actor_meets_h0_plus_delta_in_every_row():
    cfg = _era_cfg()
    obs_dim, act_dim = 17, 6
    rng = np.random.default_rng(0)
    for scale in (0.1, 10.0, 1000.0):
        params = S.mlp_init(jax.random.PRNGKey(1), [obs_dim, 32, 32, 2 * act_dim])
        params = jax.tree_util.tree_map(lambda x: x * scale, params)
        obs = jnp.asarray(rng.standard_normal((512, obs_dim)), jnp.float32)
        for delta in (-1.0, 0.0, 2.5):
            _, log_std = S.actor_dist(cfg, params, obs, jnp.float32(delta))
            h = np.asarray(log_std, np.float64).sum(-1) + 0.5 * act_dim * L2PE
            assert h.min() >= S.target_entropy(cfg, act_dim) + delta - 1e-4
            assert np.all(np.asarray(log_std) >= cfg.log_std_min - 1e-6)
            assert np.all(np.asarray(log_std) <= cfg.log_std_max + 1e-6)


def test_native_and_pure_jax_heads_give_the_same_update():
    obs_dim, act_dim, batch = 11, 3, 64
    b = T.random_batch(np.random.default_rng(1), obs_dim, act_dim, batch)
    out = {}
    for head in ("native", "jax"):
        cfg = _era_cfg(head=head, hidden=32)
        init, opt = S.make_agent(cfg, obs_dim, act_dim)
        upd = jax.jit(S.make_update(cfg, act_dim, opt))
        agent = init(jax.random.PRNGKey(0))
        for _ in range(3):
            agent, m = upd(agent, b)
        out[head] = (agent, m)
    for x, y in zip(jax.tree_util.tree_leaves(out["native"][0]), jax.tree_util.tree_leaves(out["jax"][0])):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=2e-4, atol=2e-5)


def test_tanh_log_density_matches_change_of_variables():
    cfg = S.Config(agent="sac", policy="tanh")
    rng = np.random.default_rng(2)
    mean = jnp.asarray(rng.standard_normal((1000, 4)) * 2, jnp.float32)
    log_std = jnp.asarray(rng.uniform(-3, 1, (1000, 4)), jnp.float32)
    a, logp, h = S.sample_action(cfg, mean, log_std, jax.random.PRNGKey(3))
    a64 = np.clip(np.asarray(a, np.float64), -1 + 1e-6, 1 - 1e-6)
    u = np.arctanh(a64)
    m, ls = np.asarray(mean, np.float64), np.asarray(log_std, np.float64)
    ref = np.sum(-0.5 * ((u - m) / np.exp(ls)) ** 2 - 0.5 * np.log(2 * np.pi) - ls - np.log1p(-np.tanh(u) ** 2), -1)
    ok = np.all(np.abs(a64) < 0.999, axis=-1)  # away from f32 saturation, where arctanh loses the digits
    assert ok.sum() > 300
    np.testing.assert_allclose(np.asarray(logp)[ok], ref[ok], rtol=1e-3, atol=2e-3)
    np.testing.assert_array_equal(np.asarray(h), -np.asarray(logp))


def test_truncated_normal_sampler_density_and_entropy():
    """Samples stay in [-1, 1], their empirical moments match the truncated normal,
    and -E[log p] over many samples matches the closed-form entropy."""
    from scipy import stats

    cfg = _era_cfg(policy="truncnorm")
    n = 200_000
    for mu, ls in ((0.3, -0.5), (2.0, -1.0), (-1.5, 0.5), (0.0, -3.0)):
        mean = jnp.full((n, 1), mu, jnp.float32)
        log_std = jnp.full((n, 1), ls, jnp.float32)
        a, logp, h = S.sample_action(cfg, mean, log_std, jax.random.PRNGKey(4))
        a = np.asarray(a, np.float64)[:, 0]
        assert a.min() >= -1 and a.max() <= 1
        loc, sd = math.tanh(mu), math.exp(ls)
        tn = stats.truncnorm((-1 - loc) / sd, (1 - loc) / sd, loc=loc, scale=sd)
        assert abs(a.mean() - tn.mean()) < 5 * tn.std() / math.sqrt(n) + 1e-4
        assert abs(a.std() - tn.std()) < 0.01 * tn.std() + 1e-4
        np.testing.assert_allclose(np.asarray(logp)[:1000], tn.logpdf(a[:1000]), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(float(h[0]), tn.entropy(), rtol=1e-4, atol=1e-4)
        assert abs(-np.mean(np.asarray(logp, np.float64)) - tn.entropy()) < 0.02


def _update_once(cfg, steps=1):
    obs_dim, act_dim, batch = 5, 2, 32
    b = T.random_batch(np.random.default_rng(5), obs_dim, act_dim, batch)
    init, opt = S.make_agent(cfg, obs_dim, act_dim)
    upd = jax.jit(S.make_update(cfg, act_dim, opt))
    a0 = init(jax.random.PRNGKey(0))
    a = a0
    for _ in range(steps):
        a, m = upd(a, b)
    return a0, a, m


def test_sac_temperature_follows_the_entropy_gap():
    # a wide initial policy (entropy far above -|A|): alpha must fall
    a0, a, m = _update_once(S.Config(agent="sac", hidden=16), steps=5)
    assert float(a.log_alpha) < float(a0.log_alpha)
    assert float(m["alpha"]) > 0
    assert float(a.delta.delta) == float(a0.delta.delta)  # sac never touches delta


@pytest.mark.parametrize("policy", ["tanh", "truncnorm"])
def test_sac_era_learns_delta_from_the_bounded_entropy_and_has_no_temperature(policy):
    cfg = _era_cfg(hidden=16, policy=policy)
    a0, a, m = _update_once(cfg, steps=1)
    assert float(a.log_alpha) == float(a0.log_alpha)
    assert float(m["alpha"]) == 0.0
    # delta starts at initial_delta and moves against the gap between the bounded
    # entropy and H0 = -|A| = -2 by the SGD rate times that gap
    d0 = S.initial_delta(cfg, 2)
    assert float(a0.delta.delta) == pytest.approx(d0, rel=1e-6, abs=1e-7)
    assert float(m["delta"]) == pytest.approx(d0, rel=1e-6, abs=1e-7)
    gap = float(m["bounded_entropy"]) - (-2.0)
    assert abs(gap) > 1e-3
    assert float(a.delta.delta) == pytest.approx(d0 - cfg.delta_lr * gap, rel=1e-5, abs=1e-6)
    if policy == "truncnorm":
        assert gap > 0  # the largest truncation gap puts the start above H0
    assert float(m["gauss_margin_min"]) > -1e-4


def test_sac_era_adam_delta_learner_steps_by_its_rate():
    a0, a, m = _update_once(_era_cfg(hidden=16, delta_optimizer="adam", delta_lr=3e-4), steps=1)
    gap = float(m["bounded_entropy"]) - (-2.0)
    assert abs(gap) > 1e-3
    # the first Adam step has size lr whatever the gap
    assert float(a.delta.delta) == pytest.approx(-math.copysign(3e-4, gap), rel=1e-3)
    assert int(a.delta.adam_t) == 1


def test_each_agent_has_its_usual_log_std_bounds():
    assert (S.Config(agent="sac").log_std_min, S.Config(agent="sac").log_std_max) == (-5.0, 2.0)
    assert (_era_cfg().log_std_min, _era_cfg().log_std_max) == (-8.0, 0.0)
    c = _era_cfg(log_std_min=-10.0, log_std_max=2.0)
    assert (c.log_std_min, c.log_std_max) == (-10.0, 2.0)


def test_truncation_gap_bound_is_the_largest_gap_over_locations_and_stds():
    # H(normal) - H(TN(loc, std, [-1, 1])) from the library's closed form, on a grid
    import era_jax

    locs = np.linspace(-1.0, 1.0, 201)
    for hi in (-2.0, 0.0, 1.0):
        log_stds = np.linspace(-8.0, hi, 121)
        loc, ls = np.meshgrid(locs, log_stds)
        h = np.asarray(
            era_jax.truncated_normal_entropy(jnp.asarray(loc[..., None]), jnp.asarray(ls[..., None]), low=-1.0, high=1.0)
        )
        gap = ls + 0.5 * L2PE - h
        assert gap.min() >= -1e-5  # truncation never adds entropy
        bound = S.truncation_gap_bound(hi)
        assert gap.max() <= bound + 1e-5
        assert gap.max() == pytest.approx(bound, abs=1e-4)  # reached at a bound, at the largest std
    # the limits: ln 2 (a half-normal) for a tiny std; 0.8528 at std = 1 (the ERA default bound)
    assert S.truncation_gap_bound(-20.0) == pytest.approx(math.log(2.0), abs=1e-12)
    assert S.truncation_gap_bound(0.0) == pytest.approx(0.852844441, abs=1e-8)
    gaps = [S.truncation_gap_bound(x) for x in np.linspace(-8.0, 2.0, 101)]
    assert all(b >= a - 1e-12 for a, b in zip(gaps, gaps[1:]))  # flat at ln 2 (to rounding) for tiny stds, then rising
    assert gaps[100] > gaps[90] > gaps[80] > gaps[70] > math.log(2.0)  # log-stds 2, 1, 0, -1


def test_initial_delta_puts_every_state_at_or_above_h0():
    import era_jax

    cfg = _era_cfg(policy="truncnorm")
    obs_dim, act_dim = 17, 6
    h0 = S.target_entropy(cfg, act_dim)
    d0 = S.initial_delta(cfg, act_dim)
    assert d0 == pytest.approx(act_dim * S.truncation_gap_bound(0.0))
    assert S.initial_delta(_era_cfg(policy="tanh"), act_dim) == 0.0
    assert S.initial_delta(_era_cfg(policy="truncnorm", delta_init=0.25), act_dim) == 0.25
    rng = np.random.default_rng(7)
    for scale in (0.1, 10.0, 1000.0):  # up to means saturated at the bounds
        params = S.mlp_init(jax.random.PRNGKey(2), [obs_dim, 32, 32, 2 * act_dim])
        params = jax.tree_util.tree_map(lambda x: x * scale, params)
        obs = jnp.asarray(rng.standard_normal((512, obs_dim)), jnp.float32)
        mean, log_std = S.actor_dist(cfg, params, obs, jnp.float32(d0))
        h = np.asarray(era_jax.truncated_normal_entropy(jnp.tanh(mean), log_std, low=-1.0, high=1.0))
        assert h.min() >= h0 - 1e-4


def test_fixed_delta_stays():
    a0, a, _ = _update_once(_era_cfg(hidden=16, delta="fixed", delta_init=0.5), steps=3)
    assert float(a.delta.delta) == pytest.approx(0.5)
    assert int(a.delta.adam_t) == 0


def test_short_run_end_to_end(tmp_path):
    """Both agents, two seeds, a few hundred steps on Hopper: CSV, JSON, report, plot."""
    out = str(tmp_path)
    for agent in ("sac", "sac-era"):
        cfg = S.Config(
            agent=agent,
            task="Hopper-v5",
            policy=S.default_policy(agent),
            steps=400,
            start_steps=200,
            batch=32,
            hidden=32,
            eval_every=200,
            eval_episodes=1,
            log_every=100,
        )
        s = S.train(cfg, [0, 1], out, progress=False)
        assert len(s["final_eval_return"]) == 2 and all(np.isfinite(s["final_eval_return"]))
    rows = R.load_runs(out)
    era = [r for r in rows if r["agent"] == "sac-era" and r.get("gauss_margin_min", "") != ""]
    assert era and min(float(r["gauss_margin_min"]) for r in era) > -1e-4
    # each window logs the lowest batch mean of the bounded entropy next to the mean,
    # and with 100 updates per window the lowest lies strictly below the mean somewhere
    learning = [r for r in rows if r.get("bounded_entropy", "") != ""]
    assert all(float(r["bounded_entropy_min"]) <= float(r["bounded_entropy"]) + 1e-6 for r in learning)
    assert any(float(r["bounded_entropy_min"]) < float(r["bounded_entropy"]) - 1e-4 for r in learning)
    table = T.report(out)
    assert "| Hopper-v5 | sac |" in table and "| Hopper-v5 | sac-era [truncnorm] |" in table
    png = os.path.join(out, "p.png")
    T.plot(out, png)
    assert os.path.getsize(png) > 10_000
    assert sorted(os.listdir(out)) == [
        "Hopper-v5_sac-era_truncnorm.csv",
        "Hopper-v5_sac-era_truncnorm.json",
        "Hopper-v5_sac.csv",
        "Hopper-v5_sac.json",
        "p.png",
    ]


def test_command_line_rejects_unknown_agent():
    with pytest.raises(SystemExit):
        S.main(["train", "--agent", "ppo"])


def test_command_line_gives_the_configs_of_the_committed_runs(monkeypatch):
    """`train` with the arguments of compare.sh builds the Config recorded in the
    committed results' JSON summaries."""
    import dataclasses
    import json

    seen = {}

    def fake_train(cfg, seeds, out, progress=True):
        seen[(cfg.agent, cfg.delta)] = (cfg, seeds, out, progress)
        return {"seeds": seeds, "final_eval_return": [0.0], "train_steps_per_s": 1.0, "wall_s": 1.0}

    monkeypatch.setattr(S, "train", fake_train)
    common = ["--task", "Hopper-v5", "--steps", "30000", "--seeds", "0", "1", "--threads", "1", "--out", "x", "--no-progress"]
    S.main(["train", "--agent", "sac", *common])
    S.main(["train", "--agent", "sac-era", *common])
    S.main(["train", "--agent", "sac-era", "--delta", "fixed", *common])
    runs = {
        ("sac", "learned"): "Hopper-v5_sac",
        ("sac-era", "learned"): "Hopper-v5_sac-era_truncnorm",
        ("sac-era", "fixed"): "Hopper-v5_sac-era-fixed_truncnorm",
    }
    for key, name in runs.items():
        cfg, seeds, out, progress = seen[key]
        assert (seeds, out, progress) == ([0, 1], "x", False)
        assert R.run_name(cfg) == name
        with open(os.path.join(os.path.dirname(__file__), "results", name + ".json")) as f:
            recorded = json.load(f)["config"]
        # fields added since those runs hold the values that reproduce them
        now = dataclasses.asdict(cfg)
        assert {k: now[k] for k in recorded} == recorded
        assert {k: v for k, v in now.items() if k not in recorded} == {
            "activation": "relu", "utd": 1, "target": "bounded", "preset": "default"
        }


def test_the_bindings_recipe_matches_this_agent():
    """bindings/jax/README.md's SAC-ERA recipe (era_jax.GaussianEra, era_jax.policies)
    has this agent's settings, initial delta and truncated normal."""
    import era_jax

    cfg = _era_cfg(policy="truncnorm")
    for act_dim in (1, 3, 6):
        era = era_jax.GaussianEra(act_dim, S.target_entropy(cfg, act_dim), cfg.log_std_min, cfg.log_std_max,
                                  mode="bounded")
        assert era.initial_delta == pytest.approx(S.initial_delta(cfg, act_dim), rel=1e-12)
        assert (era.optimizer, era.lr) == (cfg.delta_optimizer, cfg.delta_lr)
    rng = np.random.default_rng(3)
    mean = jnp.asarray(rng.normal(size=(64, 6)), jnp.float32)
    log_std = jnp.asarray(rng.uniform(-3.0, 0.0, size=(64, 6)), jnp.float32)
    key = jax.random.PRNGKey(5)
    a, logp, h = S.sample_action(cfg, mean, log_std, key)
    pi = era_jax.policies.TruncatedNormal(jnp.tanh(mean), log_std)
    np.testing.assert_allclose(pi.sample(key), a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pi.log_prob(a), logp, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pi.entropy(), h, rtol=1e-6, atol=1e-6)


def test_paper_preset_builds_the_official_settings(monkeypatch):
    """--preset paper: both agents at 512x512 ELU, two updates per step, batch 256;
    SAC-ERA with the 0.25/dim Gaussian floor, delta fixed at 0, the truncated normal;
    an explicit option overrides the preset."""
    seen = {}

    def fake_train(cfg, seeds, out, progress=True):
        seen[cfg.agent] = cfg
        return {"seeds": seeds, "final_eval_return": [0.0], "train_steps_per_s": 1.0, "wall_s": 1.0}

    monkeypatch.setattr(S, "train", fake_train)
    for agent in ("sac", "sac-era"):
        S.main(["train", "--agent", agent, "--preset", "paper", "--task", "Humanoid-v5"])
    sac, era = seen["sac"], seen["sac-era"]
    for cfg in (sac, era):
        assert (cfg.hidden, cfg.activation, cfg.utd, cfg.batch, cfg.preset) == (512, "elu", 2, 256, "paper")
    assert (sac.policy, sac.target, sac.log_std_min, sac.log_std_max) == ("tanh", "bounded", -5.0, 2.0)
    assert (era.policy, era.target, era.delta, era.delta_init) == ("truncnorm", "gaussian", "fixed", 0.0)
    assert (era.log_std_min, era.log_std_max) == (-8.0, 0.0)
    assert S.target_entropy(era, 17) == pytest.approx(4.25) and S.target_entropy(sac, 17) == -17.0
    assert S.initial_delta(era, 17) == 0.0
    assert R.run_name(era) == "Humanoid-v5_sac-era-fixed_truncnorm_paper" and R.run_name(sac) == "Humanoid-v5_sac_paper"
    S.main(["train", "--agent", "sac-era", "--preset", "paper", "--hidden", "64", "--utd", "3"])
    assert (seen["sac-era"].hidden, seen["sac-era"].utd, seen["sac-era"].activation) == (64, 3, "elu")
    S.main(["train", "--agent", "sac-era"])  # no preset: the defaults of the committed runs
    assert (seen["sac-era"].hidden, seen["sac-era"].utd, seen["sac-era"].target) == (256, 1, "bounded")


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"activation": "tanh"}, "activation"),
        ({"utd": 0}, "utd"),
        ({"target": "floor"}, "target"),
        ({"agent": "sac-era", "target": "gaussian"}, "delta 'fixed'"),
    ],
)
def test_config_rejects_inconsistent_settings(kw, message):
    with pytest.raises(ValueError, match=message):
        S.Config(**kw)


def test_elu_network_and_two_updates_per_step(tmp_path):
    """utd = 2 scans two replay batches per environment step: the log's windows hold
    twice the updates, the agent matches two single updates on the same batches,
    and the ELU network is the one mlp_apply computes."""
    params = S.mlp_init(jax.random.PRNGKey(0), [3, 4, 2])
    x = jnp.asarray([[-2.0, 0.5, 1.0]])
    (w1, b1), (w2, b2) = params
    np.testing.assert_allclose(S.mlp_apply(params, x, "elu"), jax.nn.elu(x @ w1 + b1) @ w2 + b2, rtol=1e-6)
    obs_dim, act_dim, batch = 5, 2, 16
    cfg = _era_cfg(hidden=16, utd=2, activation="elu", target="gaussian", delta="fixed", delta_init=0.0)
    init, opt = S.make_agent(cfg, obs_dim, act_dim)
    step, _, _, upd = S.make_step(cfg, act_dim, opt)
    rng = np.random.default_rng(9)
    b1, b2 = (T.random_batch(rng, obs_dim, act_dim, batch) for _ in range(2))
    agent = init(jax.random.PRNGKey(1))
    one = jax.jit(upd)
    ref, m1 = one(agent, b1)
    ref, m2 = one(ref, b2)
    both = tuple(jnp.stack([x, y])[None] for x, y in zip(b1, b2))  # [seeds=1, utd=2, batch, ...]
    got, _, m = step(jax.tree_util.tree_map(lambda v: v[None], agent), both, jnp.zeros((1, obs_dim)))
    np.testing.assert_allclose(np.asarray(got.actor[0][0][0]), np.asarray(ref.actor[0][0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(m["critic_loss"])[0], [m1["critic_loss"], m2["critic_loss"]], rtol=1e-5)
    s = S.train(
        S.Config(agent="sac-era", task="Hopper-v5", policy="truncnorm", target="gaussian", delta="fixed", delta_init=0.0,
                 utd=2, activation="elu", steps=150, start_steps=100, batch=16, hidden=16, eval_every=150,
                 eval_episodes=1, log_every=150),  # fmt: skip
        [0],
        str(tmp_path),
        progress=False,
    )
    assert np.isfinite(s["final_eval_return"]).all()
    rows = R.load_runs(str(tmp_path))
    assert rows[-1]["preset"] == "default" and float(rows[-1]["target_entropy"]) == pytest.approx(0.75)  # 0.25 * |A|, Hopper: |A| = 3
    assert float(rows[-1]["gauss_margin_min"]) > -1e-4
