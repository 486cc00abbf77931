"""docs/llm-rl.md as a user meets it: every Python block runs as written (except the one that
starts a Ray cluster, whose hook and settings are checked instead), and every policy-loss key in
the verl command line is a field of era_torch.verl.EraPolicyLossConfig with the value the page's
settings table gives."""

import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("verl")
pytest.importorskip("trl")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PAGE = open(os.path.join(ROOT, "docs", "llm-rl.md")).read()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", PAGE, re.S)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_python_blocks_run(index, tmp_path):
    code = PYTHON[index]
    if "ray.init" in code:
        # starting a Ray cluster is not a unit test: the hook it names must exist and take no argument
        hook = re.search(r'"worker_process_setup_hook": "([\w.]+)"', code).group(1)
        module, name = hook.rsplit(".", 1)
        import importlib
        import inspect

        fn = getattr(importlib.import_module(module), name)
        assert all(p.default is not inspect.Parameter.empty for p in inspect.signature(fn).parameters.values())
        assert set(re.findall(r'"(ERA_VERL_\w+)"', code)) == {"ERA_VERL_K", "ERA_VERL_TOPK"}
        return
    script = tmp_path / "block.py"
    script.write_text(code)
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


def test_verl_overrides_are_config_fields():
    import era_torch.verl as ev

    cmd = next(code for lang, code in BLOCKS if lang == "sh" and "main_ppo" in code)
    keys = dict(re.findall(r"policy_loss\.(\w+)=(\S+)", cmd))
    assert keys.pop("_target_") == "era_torch.verl.EraPolicyLossConfig"
    assert keys.pop("loss_mode") == "era"
    cls = ev.policy_loss_config_class()
    fields = cls.__dataclass_fields__
    for key, value in keys.items():
        assert key in fields, key
        assert type(fields[key].default)(value) == type(fields[key].default)(
            {"era_k": 2.0, "era_lb": 0.45, "era_ub": 3.0, "era_topk": 20}[key])
