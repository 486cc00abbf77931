"""Tests of the PPO / PPO-ERA agent (ppo_era.py) and its tooling (ppo_tools.py): the
CleanRL settings, GAE against a loop of its definition, the normalisation statistics
against gymnasium's, ERA's per-state floor inside the agent, and short runs of both arms
(finite losses, the floor on every batch, the seed axis, determinism, the report and plot)."""

import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import ppo_era as P  # noqa: E402
import ppo_tools as PT  # noqa: E402

L2PE = math.log(2.0 * math.pi * math.e)
SEEDS = [3, 7]


def test_config_defaults_are_cleanrl_ppo_continuous_action():
    c = P.Config()
    assert (c.num_steps, c.update_epochs, c.num_minibatches, c.minibatch_size) == (2048, 10, 32, 64)
    assert (c.lr, c.anneal_lr, c.gamma, c.gae_lambda, c.clip_coef, c.clip_vloss) == (3e-4, True, 0.99, 0.95, 0.2, True)
    assert (c.norm_adv, c.ent_coef, c.vf_coef, c.max_grad_norm, c.adam_eps) == (True, 0.0, 0.5, 0.5, 1e-5)
    assert (c.hidden, c.obs_clip, c.rew_clip, c.log_std_init) == (64, 10.0, 10.0, 0.0)
    era = P.Config(agent="ppo-era")
    assert era.is_era and era.ent_coef == 0.0 and era.target_entropy(6) == pytest.approx(-1.8)


def test_annealed_learning_rate_is_constant_within_an_update():
    c = P.Config(steps=4 * 2048)
    per = c.update_epochs * c.num_minibatches
    lr = lambda n: P.learning_rate(c, n)  # noqa: E731
    assert lr(0) == lr(per - 1) == 3e-4
    assert lr(per) == pytest.approx(3e-4 * 0.75) and lr(4 * per - 1) == pytest.approx(3e-4 * 0.25)
    assert P.learning_rate(P.Config(anneal_lr=False), 10**6) == 3e-4


def test_gae_matches_the_recursion():
    rng = np.random.default_rng(0)
    T, gamma, lam = 50, 0.99, 0.95
    val, rew = rng.standard_normal(T), rng.standard_normal(T)
    done = (rng.random(T) < 0.1).astype(float)
    nv = 0.7
    adv = np.zeros(T)
    last = 0.0
    for t in reversed(range(T)):
        v_next = nv if t == T - 1 else val[t + 1]
        nt = 1.0 - done[t]
        last = rew[t] + gamma * v_next * nt - val[t] + gamma * lam * nt * last
        adv[t] = last
    got = P.gae(jnp.asarray(val), jnp.asarray(rew), jnp.asarray(done), jnp.asarray(nv), gamma, lam)
    np.testing.assert_allclose(np.asarray(got), adv, rtol=1e-5, atol=1e-5)


def test_running_statistics_match_gymnasium():
    from gymnasium.wrappers.utils import RunningMeanStd as GymRMS

    rng = np.random.default_rng(1)
    ours, theirs = P.RunningMeanStd((2, 4)), [GymRMS(shape=(4,)) for _ in range(2)]
    for _ in range(300):
        x = rng.standard_normal((2, 4)) * 3 + 1
        ours.update(x)
        for i in range(2):
            theirs[i].update(x[i : i + 1])
    for i in range(2):
        np.testing.assert_allclose(ours.mean[i], theirs[i].mean, rtol=1e-10)
        np.testing.assert_allclose(ours.var[i], theirs[i].var, rtol=1e-10)


@pytest.mark.parametrize("head", ["native", "jax"])
def test_era_log_std_meets_the_floor_in_every_row(head):
    cfg = P.Config(agent="ppo-era", head=head)
    A = 6
    fn = P.make_log_std(cfg, A)
    rng = np.random.default_rng(2)
    for scale in (0.0, 1.0, 30.0):
        z = jnp.asarray(rng.standard_normal(A) * scale, jnp.float32)
        ls = np.asarray(fn(z, 64), np.float64)
        assert ls.shape == (64, A)
        h = ls.sum(-1) + 0.5 * A * L2PE
        assert h.min() >= cfg.target_entropy(A) - 1e-5
        assert ls.max() <= cfg.log_std_max + 1e-6 and ls.min() >= cfg.log_std_min - 1e-6
    native = P.make_log_std(P.Config(agent="ppo-era"), A)(z, 4)
    np.testing.assert_allclose(np.asarray(fn(z, 4)), np.asarray(native), atol=1e-5)


def _short(agent, **kw):
    return P.Config(task="Hopper-v5", agent=agent, steps=3 * 1024, num_steps=1024, num_minibatches=8,
                    update_epochs=4, eval_points=1, eval_episodes=1, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ppo"))
    res = {agent: P.train(_short(agent), SEEDS, out, log=None) for agent in ("ppo", "ppo-era")}
    res["again"] = P.train(_short("ppo-era"), SEEDS, None, log=None)
    res["out"] = out
    return res


def test_short_runs_have_finite_losses_and_one_row_per_seed_and_rollout(runs):
    for agent in ("ppo", "ppo-era"):
        rows = runs[agent]["rows"]
        assert len(rows) == 3 * len(SEEDS)
        assert [int(r["seed"]) for r in rows[:2]] == SEEDS
        for r in rows:
            for k in ("pg_loss", "v_loss", "approx_kl", "clipfrac", "entropy_per_dim"):
                assert np.isfinite(r[k]), (agent, k, r)
        assert sum(r["episodes"] for r in rows) > 0  # Hopper's random start falls within 1024 steps
        assert all(np.isfinite(x) for x in runs[agent]["final_return"])


def test_evaluation_schedule_is_evenly_spaced_and_ends_the_run():
    c = P.Config(steps=244 * 2048)  # 244 rollouts, 10 evaluations: every 24th, and after the last
    its = [i for i in range(c.iterations) if c.is_eval_iteration(i)]
    assert its == [24 * k - 1 for k in range(1, 11)] + [243]
    assert [i for i in range(3) if P.Config(steps=3 * 2048, eval_points=10).is_eval_iteration(i)] == [0, 1, 2]
    assert not any(P.Config(steps=8 * 2048, eval_points=0).is_eval_iteration(i) for i in range(8))


def test_the_deterministic_evaluation_ends_the_run_and_gives_the_final_eval_return(runs):
    for agent in ("ppo", "ppo-era"):
        s = runs[agent]
        ev = [r for r in s["rows"] if r["eval_return"] != ""]
        assert [int(r["step"]) for r in ev] == [3 * 1024] * len(SEEDS)  # eval_points=1: after the last rollout
        assert [step for step, _ in s["eval_returns"]] == [3 * 1024]
        assert s["final_eval_return"] == pytest.approx([r["eval_return"] for r in ev])
        assert all(np.isfinite(x) for x in s["final_eval_return"])
    assert P.final_eval_returns([(1, [1.0, 2.0]), (2, [3.0, 4.0]), (3, [5.0, 9.0])], 2) == [4.0, 6.5]
    assert P.final_eval_returns([], 3) == []


def test_evaluation_is_deterministic_and_leaves_the_training_statistics_alone(runs):
    cfg = _short("ppo-era")
    params = runs["ppo-era"]["params"]
    rms = P.RunningMeanStd((len(SEEDS), runs["ppo-era"]["obs_dim"]))
    rms.mean, rms.var, rms.count = rms.mean + 0.1, rms.var * 2.0, 50.0
    before = (rms.mean.copy(), rms.var.copy(), rms.count)
    out = []
    for _ in range(2):
        envs = [P.make_env(cfg, s + P.EVAL_SEED_OFFSET) for s in SEEDS]
        for e, s in zip(envs, SEEDS):
            e.reset(seed=s + P.EVAL_SEED_OFFSET)
        out.append(P.evaluate(cfg, envs, params, rms, 2))
    assert out[0] == out[1] and [len(r) for r in out[0]] == [2, 2]
    np.testing.assert_array_equal(rms.mean, before[0])
    np.testing.assert_array_equal(rms.var, before[1])
    assert rms.count == before[2]


def test_era_arm_holds_the_floor_on_every_batch(runs):
    A = runs["ppo-era"]["act_dim"]
    h0 = P.Config(agent="ppo-era").target_entropy(A)
    for r in runs["ppo-era"]["rows"]:
        # the smallest margin over every state of the rollout and of every minibatch of the update
        assert r["margin_min"] >= -1e-5
        assert r["entropy_per_dim"] * A >= h0 - 1e-5
    assert all(np.isnan(r["margin_min"]) for r in runs["ppo"]["rows"])
    # PPO starts from its log-std parameter: 0, the entropy of N(0, 1) per dimension
    assert runs["ppo"]["rows"][0]["entropy_per_dim"] == pytest.approx(0.5 * L2PE, abs=1e-5)


def test_parameters_carry_the_seed_axis(runs):
    s = runs["ppo-era"]
    A, O = s["act_dim"], s["obs_dim"]
    p = s["params"]
    assert p["log_std"].shape == (len(SEEDS), A)
    assert [w.shape for w, _ in p["actor"]] == [(2, O, 64), (2, 64, 64), (2, 64, A)]
    assert [w.shape for w, _ in p["critic"]] == [(2, O, 64), (2, 64, 64), (2, 64, 1)]
    assert not np.allclose(p["actor"][0][0][0], p["actor"][0][0][1])  # the seeds differ


def test_a_fixed_seed_gives_the_same_run(runs):
    a, b = runs["ppo-era"], runs["again"]
    jax.tree_util.tree_map(np.testing.assert_array_equal, a["params"], b["params"])
    assert a["episode_returns"] == b["episode_returns"]


def test_report_and_plot_read_the_logs(runs, tmp_path):
    out = runs["out"]
    entries = PT.summarize(out)
    assert sorted(e["agent"] for e in entries) == ["ppo", "ppo-era"]
    text = PT.report(out)
    assert "Hopper-v5" in text and "ppo-era" in text and "final eval return" in text
    png = str(tmp_path / "p.png")
    PT.plot(out, png)
    assert os.path.getsize(png) > 1000
    scores = PT.normalized_scores(entries, {"Hopper-v5": 0.0})
    assert max(scores["ppo"].max(), scores["ppo-era"].max()) == pytest.approx(1.0)
    scores = PT.normalized_scores(entries, {"Hopper-v5": 0.0}, key="final_eval")
    assert max(scores["ppo"].max(), scores["ppo-era"].max()) == pytest.approx(1.0)


def test_tuning_choice_reads_each_arms_setting(runs):
    choice = PT.choose(runs["out"])
    assert choice["ppo"] == {"log_std_init": 0.0, "from": "Hopper-v5_ppo"}
    assert choice["ppo-era"] == {"h0_per_dim": -0.3, "from": "Hopper-v5_ppo-era"}
    assert P.parse_seeds("10-14") == [10, 11, 12, 13, 14] and P.parse_seeds("0,2") == [0, 2]
