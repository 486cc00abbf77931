"""The Gaussian and softmax heads' autograd on CPU, which keeps softmax(z) for the backward
instead of z (docs/math.md#saved-softmax; src/era_torch/_heads.py): values and gradients
against the PyTorch transcription (tests/torch_ref.py) and, bit for bit, against the path
that keeps z (the ops of _ops.py); what the graph saves; torch.compile, torch.func, the
double backward; the saved ops themselves (opcheck, vmap, the C++ kernels against their
Python implementations)."""

import math
import warnings

import pytest
import torch
from conftest import layouts, torch_ref

import era_torch
from era_torch import _heads, _ops

LO, HI, TAU = -5.0, 0.0, 4.0
DTYPES = (torch.float32, torch.float64)
BATCHES = (1, 17, 256)
_BITS = {torch.float64: torch.int64, torch.float32: torch.int32}


def _h0(d):
    return -1.0 * d  # feasible for every D here, with |delta| <= 0.5


def _soft_h0(n):
    return 0.3  # inside [1 + ln(ln(tau)/tau), 1 + ln(n ln(tau)/tau)] for tau = 4 and n >= 2


def same(a, b, what=""):
    """The same dtype, shape and bits."""
    assert a.dtype == b.dtype and a.shape == b.shape, (what, a.dtype, b.dtype, a.shape, b.shape)
    assert torch.equal(a.contiguous().view(_BITS[a.dtype]), b.contiguous().view(_BITS[b.dtype])), (what, (a - b).abs().max())


def close(a, b, dtype, what=""):
    """Agreement with the float64 transcription: to rounding in float64, to the f32 kernels' accuracy in float32."""
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol * (1 + b.abs().max().item()), msg=what)


def _gaussian_z_path(z, delta, h0):
    return _ops._GaussianLogStd.apply(z, delta, h0, LO, HI)


def _grads(f, z, delta, w):
    z = z.detach().clone().requires_grad_()
    args = (z,) if delta is None else (z, delta.detach().clone().requires_grad_())
    out = f(*args)
    return (out,) + torch.autograd.grad((out * w).sum(), args)


# ------------------------------------------------------------------ values and gradients


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", (1, 6, 21, 61))
@pytest.mark.parametrize("rows", BATCHES)
def test_gaussian_matches_the_z_path_and_the_reference(gen, dtype, d, rows):
    z = (torch.randn(rows, d, generator=gen, dtype=torch.float64) * 2).to(dtype)
    w = torch.randn(rows, d, generator=gen, dtype=torch.float64).to(dtype)
    h0 = _h0(d)
    for delta in (torch.tensor(0.3, dtype=dtype), (torch.rand(rows, generator=gen, dtype=torch.float64) - 0.5).to(dtype)):
        public = lambda z, dl: era_torch.gaussian_log_std(z, target_entropy=h0, log_std_min=LO, log_std_max=HI, delta=dl)  # noqa: E731
        out, gz, gd = _grads(public, z, delta, w)
        out_z, gz_z, gd_z = _grads(lambda z, dl: _gaussian_z_path(z, dl, h0), z, delta, w)
        same(out, out_z, "out")
        same(gz, gz_z, "d/dz")
        same(gd, gd_z, "d/d delta")
        ref, rz, rd = _grads(lambda z, dl: torch_ref.gaussian_log_std_reference(z, h0, LO, HI, dl),
                             z.double(), delta.double(), w.double())
        close(out, ref, dtype, "out")
        close(gz, rz, dtype, "d/dz")
        close(gd, rd, dtype, "d/d delta")
        # the ops themselves: the saved forward's output bit for bit, its backward from softmax(z)
        o, s = torch.ops.era.gaussian_log_std_saved(z, delta, h0, LO, HI)
        same(o, torch.ops.era.gaussian_log_std(z, delta, h0, LO, HI), "op out")
        close(s, torch.softmax(z.double(), -1), dtype, "saved")
        for a, b in zip(torch.ops.era.gaussian_log_std_saved_backward(s, delta, w, h0, LO, HI),
                        torch.ops.era.gaussian_log_std_backward(z, delta, w, h0, LO, HI)):
            same(a, b, "op backward")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", (2, 10, 17, 1000))
@pytest.mark.parametrize("rows", BATCHES)
def test_softmax_matches_the_z_path_and_the_reference(gen, dtype, n, rows):
    z = (torch.randn(rows, n, generator=gen, dtype=torch.float64) * 3).to(dtype)
    w = torch.randn(rows, n, generator=gen, dtype=torch.float64).to(dtype)
    h0 = _soft_h0(n)
    out, gz = _grads(lambda z: era_torch.softmax_logits(z, target_entropy=h0, tau=TAU), z, None, w)
    out_z, gz_z = _grads(lambda z: _ops._SoftmaxLogits.apply(z, h0, TAU), z, None, w)
    same(out, out_z, "out")
    if dtype == torch.float32:
        same(gz, gz_z, "d/dz")  # the vectorised float32 kernels: the same bits
    else:  # float64 sums 1 - s_j from the saved probabilities: equal to rounding
        torch.testing.assert_close(gz, gz_z, rtol=1e-12, atol=1e-14 * (1 + gz_z.abs().max().item()))
    ref, rz = _grads(lambda z: torch_ref.softmax_logits_reference(z, h0, TAU), z.double(), None, w.double())
    close(out, ref, dtype, "out")
    close(gz, rz, dtype, "d/dz")
    o, s, q = torch.ops.era.softmax_logits_saved(z, h0, TAU)
    same(o, torch.ops.era.softmax_logits(z, h0, TAU), "op out")
    close(s, torch.softmax(z.double(), -1), dtype, "saved")
    close(q, torch_ref.softmax_dwdh_reference(z.double(), h0, TAU), dtype, "dw/dh")
    gq = torch.ops.era.softmax_logits_saved_backward(s, q, w, h0, TAU)
    if dtype == torch.float32:
        same(gq, torch.ops.era.softmax_logits_backward(z, w, h0, TAU), "op backward")
    close(gq, rz, dtype, "op backward")


@pytest.mark.parametrize("layout", ["contiguous", "strided", "permuted"])
def test_layouts(gen, layout):
    z0 = torch.randn(12, 6, generator=gen, dtype=torch.float64)
    w = torch.randn(12, 6, generator=gen, dtype=torch.float64)
    z = layouts(z0)[layout]
    delta = torch.linspace(-0.3, 0.3, 12, dtype=torch.float64)
    f = lambda z, d: era_torch.gaussian_log_std(z, target_entropy=-6.0, log_std_min=LO, log_std_max=HI, delta=d)  # noqa: E731
    for a, b in zip(_grads(f, z, delta, w), _grads(lambda z, d: _gaussian_z_path(z, d, -6.0), z0, delta, w)):
        same(a, b, layout)
    g = lambda z: era_torch.softmax_logits(z, target_entropy=0.3, tau=TAU)  # noqa: E731
    for a, b in zip(_grads(g, z, None, w), _grads(lambda z: _ops._SoftmaxLogits.apply(z, 0.3, TAU), z0, None, w)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_gradcheck(gen):
    z = torch.randn(5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    rows = torch.linspace(-0.3, 0.1, 5, dtype=torch.float64, requires_grad=True)
    f = lambda z, d: era_torch.gaussian_log_std(z, target_entropy=-4.0, log_std_min=LO, log_std_max=HI, delta=d)  # noqa: E731
    assert torch.autograd.gradcheck(f, (z, rows))
    s = torch.randn(6, 10, generator=gen, dtype=torch.float64, requires_grad=True)
    # the output's min-shift is a constant (docs/math.md#softmax-backward): a shift-invariant function of it
    assert torch.autograd.gradcheck(lambda s: torch.log_softmax(era_torch.softmax_logits(s, target_entropy=0.3, tau=TAU), -1), (s,))


# ------------------------------------------------------------------ what the graph keeps


def _packed(f, *args):
    packed = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
        out = f(*args)
    return out, packed


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_graph_keeps_softmax_not_z(gen, dtype):
    z = torch.randn(17, 6, generator=gen, dtype=dtype, requires_grad=True)
    delta = torch.tensor(0.2, dtype=dtype, requires_grad=True)
    out, packed = _packed(lambda z, d: era_torch.gaussian_log_std(z, target_entropy=-6.0, delta=d), z, delta)
    soft = torch.softmax(z.detach().double(), -1)
    big = [t for t in packed if t.shape == z.shape]
    assert len(big) == 1 and not any(t is z or t.data_ptr() == z.data_ptr() for t in packed)
    close(big[0], soft, dtype, "saved")
    others = [t for t in packed if t.shape != z.shape]
    assert len(others) == 1 and others[0].data_ptr() == delta.data_ptr()
    out.sum().backward()
    assert z.grad is not None and delta.grad is not None

    # the softmax head keeps softmax(z) and dw/dh
    s = torch.randn(9, 10, generator=gen, dtype=dtype, requires_grad=True)
    _, packed = _packed(lambda s: era_torch.softmax_logits(s, target_entropy=0.3, tau=TAU), s)
    assert len(packed) == 2 and all(t.data_ptr() != s.data_ptr() for t in packed)
    close(packed[0], torch.softmax(s.detach().double(), -1), dtype, "saved")
    close(packed[1], torch_ref.softmax_dwdh_reference(s.detach().double(), 0.3, TAU), dtype, "dw/dh")
    # half precision is computed in float32: the graph keeps float32 residuals
    _, packed = _packed(lambda s: era_torch.softmax_logits(s, target_entropy=0.3, tau=TAU), s.detach().bfloat16().requires_grad_())
    assert [t.dtype for t in packed] == [torch.float32, torch.float32]


def test_other_devices_keep_z():
    """Off the CPU (here the meta device, which runs the ops' fake implementations) the graph keeps z."""
    z = torch.empty(4, 6, device="meta", requires_grad=True)
    _, packed = _packed(lambda z: era_torch.gaussian_log_std(z, target_entropy=-6.0), z)
    assert any(t is z for t in packed)
    assert not _heads._saves_softmax(z) and _heads._saves_softmax(torch.zeros(1, 2))
    assert not _heads._saves_softmax(torch.zeros(1, 2, dtype=torch.int32))  # the library's dtype error, from the z path


# ------------------------------------------------------------------ transforms


def test_torch_compile_inductor(gen):
    """A step using both heads, compiled with Inductor's defaults (fullgraph: no graph break)
    against eager mode."""
    torch.manual_seed(0)
    head = era_torch.EraGaussian(3, -3.0)
    lin = torch.nn.Linear(5, 6 + 10)

    def step(x, delta):
        mu, z, logits = lin(x).split([3, 3, 10], dim=-1)
        log_std = head(z)
        out = era_torch.gaussian_log_std(z, target_entropy=-3.0, delta=delta)
        probs = era_torch.softmax_logits(logits, target_entropy=0.3, tau=TAU)
        return (log_std.exp() * mu).sum() + out.pow(2).sum() + probs.pow(2).sum()

    compiled = torch.compile(step, fullgraph=True)
    x = torch.randn(17, 5, generator=gen)
    delta = torch.linspace(-0.2, 0.2, 17, requires_grad=True)
    params = [lin.weight, lin.bias, delta]
    loss_c = compiled(x, delta)
    g_c = torch.autograd.grad(loss_c, params)
    loss_e = step(x, delta)
    g_e = torch.autograd.grad(loss_e, params)
    torch.testing.assert_close(loss_c, loss_e)
    for a, b in zip(g_c, g_e):
        torch.testing.assert_close(a, b)


def test_compiled_graphs_call_each_op_once(gen):
    """Under torch.compile (AOTAutograd with Inductor's partitioner): the forward graph calls the
    saved forward, the backward graph the saved backward, and neither calls the other's op (the
    partitioner keeps softmax(z) rather than recomputing it)."""
    from functorch.compile import make_boxed_func, min_cut_rematerialization_partition
    from torch._dynamo.backends.common import aot_autograd

    graphs = []

    def keep(gm, _):
        graphs.append(str(gm.graph))
        return make_boxed_func(gm.forward)

    backend = aot_autograd(fw_compiler=keep, bw_compiler=keep, partition_fn=min_cut_rematerialization_partition)
    z = torch.randn(8, 12, generator=gen, requires_grad=True)
    f = torch.compile(lambda z: era_torch.gaussian_log_std(z[:, :6], target_entropy=-6.0).exp().sum()
                      + era_torch.softmax_logits(z[:, 6:], target_entropy=0.3, tau=TAU).pow(2).sum(),
                      backend=backend, fullgraph=True)
    f(z).backward()
    forward, backward = graphs
    for op in ("gaussian_log_std_saved.", "softmax_logits_saved."):
        assert forward.count(op) == 1 and op not in backward, (op, forward, backward)
    for op in ("gaussian_log_std_saved_backward.", "softmax_logits_saved_backward."):
        assert backward.count(op) == 1 and op not in forward, (op, forward, backward)
    assert "era.gaussian_log_std." not in forward + backward and "era.softmax_logits." not in forward + backward


def test_torch_func(gen):
    """grad (w.r.t. z and a per-row delta), vmap against a loop and vmap of grad, without
    vmap's per-example fallback; float64, exact."""
    z = torch.randn(4, 5, 6, generator=gen, dtype=torch.float64)
    w = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    d = torch.linspace(-0.3, 0.3, 5, dtype=torch.float64)
    g = lambda z, d: era_torch.gaussian_log_std(z, target_entropy=-6.0, log_std_min=LO, log_std_max=HI, delta=d)  # noqa: E731
    s = lambda z: era_torch.softmax_logits(z, target_entropy=0.3, tau=TAU)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gz, gd = torch.func.grad(lambda z, d: (g(z, d) * w).sum(), argnums=(0, 1))(z[0], d)
        _, rz, rd = _grads(lambda z, d: _gaussian_z_path(z, d, -6.0), z[0], d, w)
        same(gz, rz)
        same(gd, rd)
        same(torch.func.vmap(g, in_dims=(0, None))(z, d), torch.stack([g(zi, d) for zi in z]))
        same(torch.func.vmap(s)(z), torch.stack([s(zi) for zi in z]))
        per = torch.func.vmap(torch.func.grad(lambda z, d: (g(z, d) * w).sum(), argnums=(0, 1)), in_dims=(0, None))(z, d)
        for i in range(4):
            _, rz, rd = _grads(lambda z, d: _gaussian_z_path(z, d, -6.0), z[i], d, w)
            same(per[0][i], rz)
            same(per[1][i], rd)
        sg = torch.func.vmap(torch.func.grad(lambda z: (s(z) * w).sum()))(z)
        for i in range(4):
            torch.testing.assert_close(sg[i], _grads(lambda z: _ops._SoftmaxLogits.apply(z, 0.3, TAU), z[i], None, w)[1],
                                       rtol=1e-12, atol=1e-14)
        jac = torch.func.jacrev(lambda z: g(z, d))(z[0])
        assert torch.equal(jac, torch.autograd.functional.jacobian(lambda z: _gaussian_z_path(z, d, -6.0), z[0]))


def test_double_backward_raises(gen):
    z = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    d = torch.tensor(0.1, dtype=torch.float64)
    g = lambda z: era_torch.gaussian_log_std(z, target_entropy=-6.0, delta=d)  # noqa: E731
    s = lambda z: era_torch.softmax_logits(z, target_entropy=0.3, tau=TAU)  # noqa: E731
    for f in (g, s):
        with pytest.raises(NotImplementedError, match="no double backward"):
            torch.func.grad(lambda z: torch.func.grad(lambda z: f(z).pow(2).sum())(z).sum())(z)
        with pytest.raises(NotImplementedError, match="no double backward"):
            torch.func.jacrev(torch.func.jacrev(f))(z[0])
        zz = z.clone().requires_grad_()
        (gz,) = torch.autograd.grad(f(zz).pow(2).sum(), zz, create_graph=True)
        with pytest.raises(NotImplementedError, match="no double backward"):
            gz.sum().backward()
    # delta's gradient, from the same backward, refuses the same way
    dd = d.clone().requires_grad_()
    (gd,) = torch.autograd.grad(era_torch.gaussian_log_std(z, target_entropy=-6.0, delta=dd).pow(2).sum(), dd, create_graph=True)
    with pytest.raises(NotImplementedError, match="no double backward"):
        gd.backward()


# ------------------------------------------------------------------ the saved ops themselves


def test_opcheck_and_the_residual_is_not_differentiable(gen):
    z = torch.randn(9, 6, generator=gen, dtype=torch.float64)
    d = torch.linspace(-0.2, 0.2, 9, dtype=torch.float64)
    g = torch.randn(9, 6, generator=gen, dtype=torch.float64)
    for zz in layouts(z).values():
        torch.library.opcheck(torch.ops.era.gaussian_log_std_saved.default, (zz, d, -6.0, LO, HI))
        _, saved = torch.ops.era.gaussian_log_std_saved(zz, d, -6.0, LO, HI)
        torch.library.opcheck(torch.ops.era.gaussian_log_std_saved_backward.default, (saved, d, g, -6.0, LO, HI))
        torch.library.opcheck(torch.ops.era.softmax_logits_saved.default, (zz, 0.3, TAU))
        _, ss, q = torch.ops.era.softmax_logits_saved(zz, 0.3, TAU)
        torch.library.opcheck(torch.ops.era.softmax_logits_saved_backward.default, (ss, q, g, 0.3, TAU))
    # through the op's own autograd: the first output is differentiable, the residual is not
    zg, dg = z.clone().requires_grad_(), d.clone().requires_grad_()
    out, saved = torch.ops.era.gaussian_log_std_saved(zg, dg, -6.0, LO, HI)
    _, rz, rd = _grads(lambda z, d: _gaussian_z_path(z, d, -6.0), z, d, g)
    gz, gd = torch.autograd.grad((out * g).sum(), (zg, dg))
    same(gz, rz)
    same(gd, rd)
    out, saved, q = torch.ops.era.softmax_logits_saved(zg, 0.3, TAU)
    (gz,) = torch.autograd.grad((out * g).sum(), zg)
    torch.testing.assert_close(gz, _grads(lambda z: _ops._SoftmaxLogits.apply(z, 0.3, TAU), z, None, g)[1], rtol=1e-12, atol=1e-14)
    for residual in (saved, q):
        with pytest.raises(NotImplementedError, match="not differentiable"):
            torch.autograd.grad(residual.sum(), zg, retain_graph=True)


def test_vmap_of_the_saved_ops(gen):
    z = torch.randn(3, 4, 6, generator=gen, dtype=torch.float64)
    g = torch.randn(3, 4, 6, generator=gen, dtype=torch.float64)
    d = torch.randn(3, generator=gen, dtype=torch.float64) * 0.2  # one delta per example
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, saved = torch.func.vmap(lambda z, d: torch.ops.era.gaussian_log_std_saved(z, d, -6.0, LO, HI))(z, d)
        gz, gd = torch.func.vmap(lambda s, d, g: torch.ops.era.gaussian_log_std_saved_backward(s, d, g, -6.0, LO, HI))(saved, d, g)
        so, ss, sq = torch.func.vmap(lambda z: torch.ops.era.softmax_logits_saved(z, 0.3, TAU))(z)
        sg = torch.func.vmap(lambda s, q, g: torch.ops.era.softmax_logits_saved_backward(s, q, g, 0.3, TAU))(ss, sq, g)
        # residuals of one example (unbatched), cotangents batched
        one = torch.func.vmap(lambda g: torch.ops.era.softmax_logits_saved_backward(ss[0], sq[0], g, 0.3, TAU))(g)
    for i in range(3):
        o, s = torch.ops.era.gaussian_log_std_saved(z[i], d[i], -6.0, LO, HI)
        same(out[i], o)
        same(saved[i], s)
        a, b = torch.ops.era.gaussian_log_std_saved_backward(s, d[i], g[i], -6.0, LO, HI)
        same(gz[i], a)
        same(gd[i], b)
        o, s, q = torch.ops.era.softmax_logits_saved(z[i], 0.3, TAU)
        same(so[i], o)
        same(ss[i], s)
        same(sq[i], q)
        same(sg[i], torch.ops.era.softmax_logits_saved_backward(s, q, g[i], 0.3, TAU))
        same(one[i], torch.ops.era.softmax_logits_saved_backward(ss[0], sq[0], g[i], 0.3, TAU))


needs_kernels = pytest.mark.skipif(not era_torch.cpu_kernels(), reason="C++ CPU kernels not in use: " + era_torch.cpu_kernels_status())


def _wide_columns(t):
    wide = torch.full(t.shape[:-1] + (2 * t.shape[-1] + 1,), float("nan"), dtype=t.dtype)
    wide[..., t.shape[-1] + 1 :] = t
    return wide[..., t.shape[-1] + 1 :]


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_same_bits_as_python(gen, dtype):
    z0 = (torch.randn(64, 6, generator=gen, dtype=torch.float64) * 3).to(dtype)
    g = torch.randn(64, 6, generator=gen, dtype=torch.float64).to(dtype)
    cases = dict(layouts(z0), columns=_wide_columns(z0), batch3d=z0.reshape(2, 32, 6))
    for name, z in cases.items():
        gg = g.reshape(z.shape)
        for delta in (torch.tensor(0.2, dtype=dtype), torch.linspace(-0.3, 0.3, 64, dtype=dtype).reshape(z.shape[:-1])):
            got = torch.ops.era.gaussian_log_std_saved(z, delta, -6.0, LO, HI)
            want = _heads._gaussian_saved_fwd_impl(z, delta, -6.0, LO, HI)
            for a, b in zip(got, want):
                same(a, b, name)
            for a, b in zip(torch.ops.era.gaussian_log_std_saved_backward(got[1], delta, gg, -6.0, LO, HI),
                            _heads._gaussian_saved_bwd_impl(got[1], delta, gg, -6.0, LO, HI)):
                same(a, b, name)
        got = torch.ops.era.softmax_logits_saved(z, 0.3, TAU)
        for a, b in zip(got, _heads._softmax_saved_fwd_impl(z, 0.3, TAU)):
            same(a, b, name)
        same(torch.ops.era.softmax_logits_saved_backward(got[1], got[2], gg, 0.3, TAU),
             _heads._softmax_saved_bwd_impl(got[1], got[2], gg, 0.3, TAU), name)


@needs_kernels
def test_the_kernels_take_the_common_calls(gen, monkeypatch):
    """Calls the kernels take (the public functions' forward and backward included) never reach
    the Python implementations; refused ones (errors to report) do."""
    seen = []
    for name in ("_gaussian_saved_fwd_impl", "_gaussian_saved_bwd_impl", "_softmax_saved_fwd_impl", "_softmax_saved_bwd_impl"):
        impl = getattr(_heads, name)
        monkeypatch.setattr(_heads, name, lambda *a, _impl=impl, _name=name: seen.append(_name) or _impl(*a))
    z = _wide_columns(torch.randn(8, 6, generator=gen)).requires_grad_()
    era_torch.gaussian_log_std(z, target_entropy=-6.0, delta=torch.tensor(0.1)).sum().backward()
    era_torch.softmax_logits(z, target_entropy=0.3, tau=TAU).pow(2).sum().backward()
    assert seen == []
    with pytest.raises(era_torch.EraError):
        torch.ops.era.gaussian_log_std_saved(z.detach(), torch.tensor(1e6), -6.0, LO, HI)  # infeasible
    with pytest.raises(era_torch.EraError, match="UNSUPPORTED_DTYPE"):
        torch.ops.era.softmax_logits_saved(z.detach().bfloat16(), 0.3, TAU)  # the saved functions take float32/64
    assert seen == ["_gaussian_saved_fwd_impl", "_softmax_saved_fwd_impl"]


def test_errors_are_the_librarys(gen):
    z = torch.randn(4, 6, generator=gen)
    with pytest.raises(era_torch.EraError) as e:
        era_torch.gaussian_log_std(z.requires_grad_(), target_entropy=math.inf)
    assert e.value.status.startswith("ERA_STATUS_")
    with pytest.raises(era_torch.EraError) as e:
        era_torch.softmax_logits(torch.randn(4, 1, generator=gen), target_entropy=0.3)
    assert e.value.status.startswith("ERA_STATUS_")
    # the backward from the two residuals: each must match the others (shape, dtype), as the library checks
    _, s, q = torch.ops.era.softmax_logits_saved(z, 0.3, TAU)
    g = torch.randn(4, 6, generator=gen)
    for args, status in (((s, q[:, :5], g), "ERA_STATUS_INVALID_SHAPE"), ((s, q.double(), g), "ERA_STATUS_UNSUPPORTED_DTYPE"),
                         ((s, q, g[:3]), "ERA_STATUS_INVALID_SHAPE")):
        with pytest.raises(era_torch.EraError) as e:
            torch.ops.era.softmax_logits_saved_backward(*args, 0.3, TAU)
        assert e.value.status == status, (status, e.value)
