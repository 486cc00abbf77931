"""The C++ CPU kernels of the Gaussian and softmax ops (csrc/cpu_ops.cpp) against the ops'
Python implementations: the same bits on every layout and dtype, the same errors, autograd
through the ops themselves, many threads and many head configurations. ``make test-torch``
builds them (ERA_TORCH_EXPECT_CPU_KERNELS=1) and also runs the whole suite without them."""

import os
import subprocess
import sys
import threading

import pytest
import torch

import era_torch
from era_torch import EraError, _ops

from conftest import layouts


@pytest.mark.skipif(os.environ.get("ERA_TORCH_EXPECT_CPU_KERNELS") != "1", reason="only where the build must have them")
def test_expected_kernels_are_loaded():
    """A build that must have them (make test-torch) and runs without them fails here."""
    assert era_torch.cpu_kernels(), era_torch.cpu_kernels_status()


needs_kernels = pytest.mark.skipif(not era_torch.cpu_kernels(), reason="C++ CPU kernels not in use: " + era_torch.cpu_kernels_status())

GAUSS = (-6.0, -8.0, 0.0)  # H0, log_std_min, log_std_max
SOFT = (0.8, 4.0)  # H0, tau
DTYPES = (torch.float32, torch.float64)  # the ops' dtypes (the public functions compute halves in float32)


def _wide_columns(t):
    """``t`` as the last columns of a wider tensor (rows apart, elements adjacent)."""
    wide = torch.full(t.shape[:-1] + (2 * t.shape[-1] + 1,), float("nan"), dtype=t.dtype)
    wide[..., t.shape[-1] + 1 :] = t
    return wide[..., t.shape[-1] + 1 :]


def _cases(t):
    cases = dict(layouts(t))
    cases["columns of a wider tensor"] = _wide_columns(t)
    cases["3-d batch"] = t.reshape(2, t.shape[0] // 2, t.shape[1])
    return cases


_BITS = {torch.float64: torch.int64, torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}


def _same(a, b, what):
    """The same dtype, shape and bits (NaN included)."""
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert torch.equal(a.contiguous().view(_BITS[a.dtype]), b.contiguous().view(_BITS[b.dtype])), what


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_same_bits_as_python(gen, dtype):
    z0 = torch.randn(64, 6, generator=gen, dtype=torch.float64) * 3
    g0 = torch.randn(64, 6, generator=gen, dtype=torch.float64)
    for name, z in _cases(z0.to(dtype)).items():
        g = _cases(g0.to(dtype))[name]
        rows = z.shape[:-1]
        for delta in (torch.tensor(0.25, dtype=dtype), torch.linspace(0, 0.5, rows.numel(), dtype=torch.float64).to(dtype).reshape(rows)):
            got = torch.ops.era.gaussian_log_std(z, delta, *GAUSS)
            want = _ops._gaussian_fwd_impl(z, delta, *GAUSS)
            _same(got, want, f"forward {name} {dtype}")
            gz, gd = torch.ops.era.gaussian_log_std_backward(z, delta, g, *GAUSS)
            wz, wd = _ops._gaussian_bwd_impl(z, delta, g, *GAUSS)
            _same(gz, wz, f"grad z {name} {dtype}")
            _same(gd, wd, f"grad delta {name} {dtype}")


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_same_bits_as_python(gen, dtype):
    z0 = torch.randn(64, 10, generator=gen, dtype=torch.float64) * 3
    g0 = torch.randn(64, 10, generator=gen, dtype=torch.float64)
    for name, z in _cases(z0.to(dtype)).items():
        g = _cases(g0.to(dtype))[name]
        _same(torch.ops.era.softmax_logits(z, *SOFT), _ops._softmax_fwd_impl(z, *SOFT), f"forward {name} {dtype}")
        got = torch.ops.era.softmax_logits_backward(z, g, *SOFT)
        _same(got, _ops._softmax_bwd_impl(z, g, *SOFT), f"backward {name} {dtype}")


def _error(fn):
    with pytest.raises(EraError) as e:
        fn()
    return (e.value.status, e.value.function, e.value.message)


@needs_kernels
@pytest.mark.parametrize(
    "args",
    [
        (torch.randn(4, 0), torch.tensor(0.0), *GAUSS),  # an empty last axis (no head of dimension 0)
        (torch.randn(4, 6), torch.tensor(0.0), -6.0, 1.0, 0.0),  # log_std_min > log_std_max
        (torch.randn(4, 6), torch.tensor(0.0), float("nan"), -8.0, 0.0),  # non-finite H0
        (torch.randn(4, 6), torch.tensor(1e6), *GAUSS),  # infeasible delta
        (torch.randn(4, 6), torch.zeros(3), *GAUSS),  # delta of the wrong shape
        (torch.randn(4, 6), torch.tensor(0.0, dtype=torch.float64), *GAUSS),  # delta of another dtype
        (torch.randn(4, 6).to(torch.int64), torch.tensor(0), *GAUSS),  # not a floating dtype
        (torch.randn(4, 6).to(torch.bfloat16), torch.tensor(0.0, dtype=torch.bfloat16), *GAUSS),  # a half dtype
        (torch.tensor(1.0), torch.tensor(0.0), *GAUSS),  # 0-d z
    ],
)
def test_gaussian_errors_as_python(args):
    got = _error(lambda: torch.ops.era.gaussian_log_std(*args))
    want = _error(lambda: _ops._gaussian_fwd_impl(*args))  # every case is an error
    assert got == want, (got, want)
    assert want[2], "the library's message"
    g = torch.ones_like(args[0]) if args[0].is_floating_point() else args[0]
    got_b = _error(lambda: torch.ops.era.gaussian_log_std_backward(args[0], args[1], g, *args[2:]))
    assert got_b == _error(lambda: _ops._gaussian_bwd_impl(args[0], args[1], g, *args[2:]))


@needs_kernels
def test_softmax_errors_as_python():
    cases = [
        (torch.randn(4, 5), 100.0, 4.0),  # infeasible H0
        (torch.randn(4, 5), 0.5, 0.5),  # tau below its range
        (torch.randn(4, 5), float("inf"), 4.0),
        (torch.randn(4, 1), 0.0, 4.0),  # one class
        (torch.randn(4, 5).to(torch.int32), 0.5, 4.0),
        (torch.randn(4, 5).to(torch.float16), 0.5, 4.0),
    ]
    for args in cases:
        got = _error(lambda: torch.ops.era.softmax_logits(*args))
        assert got == _error(lambda: _ops._softmax_fwd_impl(*args)), args
        assert got[2], "the library's message"
        g = torch.ones(args[0].shape)
        got = _error(lambda: torch.ops.era.softmax_logits_backward(args[0], g, *args[1:]))
        assert got == _error(lambda: _ops._softmax_bwd_impl(args[0], g, *args[1:])), args


@needs_kernels
def test_the_kernels_take_the_common_calls(gen, monkeypatch):
    """Calls the kernels take never reach the Python implementations; the others do."""
    seen = []
    for name in ("_gaussian_fwd_impl", "_gaussian_bwd_impl", "_softmax_fwd_impl", "_softmax_bwd_impl"):
        impl = getattr(_ops, name)
        monkeypatch.setattr(_ops, name, lambda *a, _impl=impl, _name=name: seen.append(_name) or _impl(*a))
    z, s = _wide_columns(torch.randn(8, 6, generator=gen)), torch.randn(8, 10, generator=gen).t()
    torch.ops.era.gaussian_log_std(z, torch.tensor(0.1), *GAUSS)
    torch.ops.era.gaussian_log_std_backward(z, torch.tensor(0.1), torch.ones(8, 6), *GAUSS)
    torch.ops.era.softmax_logits(s, *SOFT)
    torch.ops.era.softmax_logits_backward(s, torch.ones(10, 8), *SOFT)
    assert seen == []
    with pytest.raises(EraError):
        torch.ops.era.gaussian_log_std(z, torch.tensor(1e6), *GAUSS)  # infeasible: reported by Python
    with pytest.raises(EraError):
        torch.ops.era.softmax_logits_backward(s, torch.ones(3), *SOFT)
    assert seen == ["_gaussian_fwd_impl", "_softmax_bwd_impl"]


@needs_kernels
def test_more_axes_than_the_kernels_take_go_to_python(gen):
    z = torch.randn((2,) * 9 + (6,), generator=gen)  # 10 axes: the Python implementation
    _same(torch.ops.era.gaussian_log_std(z, torch.tensor(0.1), *GAUSS), _ops._gaussian_fwd_impl(z, torch.tensor(0.1), *GAUSS), "10-d")
    s = torch.randn((2,) * 9 + (10,), generator=gen)
    _same(torch.ops.era.softmax_logits(s, *SOFT), _ops._softmax_fwd_impl(s, *SOFT), "10-d")


@needs_kernels
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")  # torch's forward_ad import
def test_autograd_through_the_ops(gen):
    """With inputs that require grad, the op itself records the registered formula."""
    z = torch.randn(32, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    delta = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(32, 6, generator=gen, dtype=torch.float64)
    (torch.ops.era.gaussian_log_std(z, delta, *GAUSS) * w).sum().backward()
    gz, gd = z.grad.clone(), delta.grad.clone()
    z.grad = delta.grad = None
    (era_torch.gaussian_log_std(z, target_entropy=GAUSS[0], log_std_min=GAUSS[1], log_std_max=GAUSS[2], delta=delta) * w).sum().backward()
    assert torch.equal(gz, z.grad) and torch.equal(gd, delta.grad)
    assert torch.autograd.gradcheck(lambda z, d: torch.ops.era.gaussian_log_std(z, d, *GAUSS), (z.detach().requires_grad_(), delta.detach().requires_grad_()))

    s = torch.randn(16, 10, generator=gen, dtype=torch.float64, requires_grad=True)
    # the output's min-shift is a constant (docs/math.md#softmax-backward): a shift-invariant function of it
    assert torch.autograd.gradcheck(lambda s: torch.log_softmax(torch.ops.era.softmax_logits(s, *SOFT), -1), (s,))
    # the backward ops give first derivatives only, as the public functions' backward
    gz, _ = torch.ops.era.gaussian_log_std_backward(z, delta, torch.ones(32, 6, dtype=torch.float64), *GAUSS)
    assert gz.requires_grad
    with pytest.raises(NotImplementedError, match="no double backward"):
        gz.sum().backward()
    gs = torch.ops.era.softmax_logits_backward(s, torch.ones(16, 10, dtype=torch.float64), *SOFT)
    with pytest.raises(NotImplementedError, match="no double backward"):
        gs.sum().backward()
    # forward-mode tangents reach the public functions' autograd.Function, which refuses them
    # (the ops' Python implementations would return the primal and drop the tangent)
    import torch.autograd.forward_ad as fwAD

    with fwAD.dual_level():
        dual = fwAD.make_dual(z.detach(), torch.ones_like(z))
        with pytest.raises(NotImplementedError, match="jvp"):
            torch.ops.era.gaussian_log_std(dual, delta.detach(), *GAUSS)
        with pytest.raises(NotImplementedError, match="jvp"):
            torch.ops.era.softmax_logits(fwAD.make_dual(s.detach(), torch.ones_like(s)), *SOFT)
    # no grad mode, or inputs that do not require grad: plain tensors
    with torch.no_grad():
        assert not torch.ops.era.gaussian_log_std(z, delta, *GAUSS).requires_grad
    assert not torch.ops.era.softmax_logits(s.detach(), *SOFT).requires_grad


@needs_kernels
def test_threads_and_many_head_configurations(gen):
    """Concurrent calls with different configurations, more than the kernels' head cache holds
    (1024), give what sequential Python calls give."""
    z = torch.randn(16, 6, generator=gen)
    targets = [-6.0 + 0.002 * i for i in range(1100)]
    want = {h0: _ops._gaussian_fwd_impl(z, torch.tensor(0.0), h0, -8.0, 0.0) for h0 in targets[:64]}
    errors = []

    def work(offset):
        try:
            for i in range(offset, len(targets), 4):
                h0 = targets[i]
                got = torch.ops.era.gaussian_log_std(z, torch.tensor(0.0), h0, -8.0, 0.0)
                if h0 in want and not torch.equal(got, want[h0]):
                    errors.append(h0)
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    # the configurations evicted first are built again, correctly
    for h0 in targets[:64]:
        assert torch.equal(torch.ops.era.gaussian_log_std(z, torch.tensor(0.0), h0, -8.0, 0.0), want[h0])


def test_can_be_switched_off():
    code = "import era_torch, torch; print(era_torch.cpu_kernels(), era_torch.cpu_kernels_status()); " \
        "print(era_torch.gaussian_log_std(torch.zeros(2, 3), target_entropy=-3.0).tolist())"
    env = dict(os.environ, ERA_TORCH_CPU_KERNELS="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.startswith("False disabled by ERA_TORCH_CPU_KERNELS=0")
    here = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[1] == here.splitlines()[1]


def test_kernels_for_another_torch_warn_naming_both_versions(monkeypatch):
    """The loader under a torch other than the one the kernels were built for (the recorded
    version faked by monkeypatching torch.__version__): a Python warning naming both versions,
    and the ops' Python implementations (the pure ABI path) in use. Needs only the built file,
    not loaded kernels."""
    from era_torch import _native

    path = os.path.join(os.path.dirname(era_torch.__file__), "_cpu_ops.so")
    if not os.path.exists(path):
        pytest.skip("this build has no C++ CPU kernels: " + era_torch.cpu_kernels_status())
    with open(path[: -len(".so")] + ".built") as f:
        built = dict(line.split("=", 1) for line in f.read().split())
    monkeypatch.delenv("ERA_TORCH_CPU_KERNELS", raising=False)
    monkeypatch.setattr(torch, "__version__", "0.0.0+other")
    monkeypatch.setattr(_native, "_cpu_ops", {"loaded": True, "why": "as before"})  # restored afterwards
    with pytest.warns(UserWarning) as record:
        _native.load_cpu_kernels()
    [message] = [str(w.message) for w in record if str(w.message).startswith("era_torch:")]
    assert f"torch={built['torch']}" in message and "torch=0.0.0+other" in message, message
    assert "the ops run in Python" in message and "rebuild era_torch" in message, message
    assert not era_torch.cpu_kernels() and "torch=0.0.0+other" in era_torch.cpu_kernels_status()


@needs_kernels
def test_kernels_built_for_another_torch_are_not_loaded(tmp_path):
    """A package whose C++ kernels were built against another torch or Python warns and runs
    its ops in Python instead of loading them."""
    import shutil

    pkg = tmp_path / "era_torch"
    shutil.copytree(os.path.dirname(era_torch.__file__), pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "_cpu_ops.built").write_text("torch=0.0.0\npython=3.0\n")
    code = "import warnings; warnings.simplefilter('always'); import era_torch, torch; " \
        "print(era_torch.cpu_kernels(), era_torch.__file__); " \
        "print(era_torch.softmax_logits(torch.zeros(2, 4), target_entropy=1.0).tolist())"
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert run.stdout.startswith(f"False {pkg}"), run.stdout
    assert "rebuild era_torch" in run.stderr and "torch=0.0.0" in run.stderr
