"""docs/tdmpc2.md as a user meets it: every Python block runs as written, in a process of its
own; every TD-MPC2 name the page cites in its table of changes is one the page explains."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PAGE = open(os.path.join(ROOT, "docs", "tdmpc2.md"), encoding="utf-8").read()
PYTHON = [code for lang, code in re.findall(r"```(\w+)\n(.*?)```", PAGE, re.S) if lang == "python"]


def test_the_page_has_a_python_block():
    assert PYTHON


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_python_blocks_run(index, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(PYTHON[index])
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pi_loss" in r.stdout


def test_the_table_names_the_functions_that_change():
    for name in ("WorldModel.pi", "WorldModel.__init__", "TDMPC2.update_pi", "math.log_std"):
        assert name in PAGE, name
