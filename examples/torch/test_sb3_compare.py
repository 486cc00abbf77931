"""Tests of the SB3 SAC / SAC-ERA comparison script (sb3_compare.py): a tiny run of each
agent, the records it writes, the report's table and its bootstrap interval."""

import json
import os
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3", reason="pip install stable-baselines3==2.9.2")
pytest.importorskip("mujoco", reason="pip install gymnasium[mujoco]==1.4.0 mujoco==4.0.0")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sb3_compare as C  # noqa: E402


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()  # run() sets one thread
    yield
    torch.set_num_threads(before)


def test_bootstrap_interval_brackets_the_mean():
    lo, hi = C.bootstrap_ci([1.0, 2.0, 3.0, 10.0])
    assert lo <= np.mean([1, 2, 3, 10]) <= hi and lo >= 1.0 and hi <= 10.0
    assert C.bootstrap_ci([5.0, 5.0]) == (5.0, 5.0)


def test_tiny_runs_and_report(tmp_path, capsys):
    for agent in C.AGENTS:
        C.main(["run", "--agent", agent, "--seeds", "0", "--steps", "150", "--eval-every", "75",
                "--learning-starts", "100", "--out", str(tmp_path)])
    sac = json.load(open(tmp_path / "Hopper-v5_sac_0.json"))
    era = json.load(open(tmp_path / "Hopper-v5_sac-era_0.json"))
    assert [s for s, _ in sac["evals"]] == [75, 150] and sac["final_return"] == sac["evals"][-1][1]
    assert sac["delta"] is None and 0 < sac["ent_coef"] < 1  # SAC's temperature, decaying from 1
    assert era["ent_coef"] is None and np.isfinite(era["delta"]) and era["target_entropy"] == -3.0
    assert np.isfinite(sac["bounded_entropy"]) and np.isfinite(era["bounded_entropy"])
    C.main(["report", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith("| Hopper-v5")]
    assert [r.split(" | ")[1] for r in rows] == ["sac", "sac-era"]
    assert "stable-baselines3 2.9.2" in out
    with pytest.raises(SystemExit, match="no runs"):
        C.report(str(tmp_path / "empty"))
