"""The installed era_jax distribution carries the repository's licence texts (MIT OR Apache-2.0)
in its .dist-info/licenses, as CMakeLists.txt installs them."""

import importlib.metadata
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")


def test_the_distribution_carries_both_licence_texts():
    dist = importlib.metadata.distribution("era_jax")
    files = {str(f).replace(os.sep, "/"): f for f in dist.files or ()}
    for name in ("LICENSE-MIT", "LICENSE-APACHE"):
        matches = [f for path, f in files.items() if path.endswith(".dist-info/licenses/" + name)]
        assert matches, f"era_jax's distribution has no licenses/{name}"
        with open(os.path.join(ROOT, name), encoding="utf-8") as f:
            assert matches[0].read_text(encoding="utf-8") == f.read()
    assert "MIT OR Apache-2.0" in (dist.metadata.get("License") or "")
