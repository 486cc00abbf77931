"""torch.func transforms over the public ops: grad, vjp and jacrev against torch.autograd,
vmap (one call of the library through the batching rules) against a Python loop,
per-example gradients (vmap of grad), and the transforms that raise (forward mode, double
backward). Float64 throughout: every comparison is exact."""

import warnings

import pytest
import torch
from conftest import layouts

import era_torch

H0, LO, HI = -1.5, -5.0, 0.0
TOKEN_CFG = dict(k=2.0, omega_low=1.2, omega_high=1.6, top_fraction=0.3, temperature=0.8)
F64 = dict(dtype=torch.float64)


@pytest.fixture(autouse=True)
def no_warnings():
    """Any warning fails (in particular vmap's "no batching rule, falling back to a loop")."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def gauss(z, d=0.25):
    return era_torch.gaussian_log_std(z, target_entropy=H0, log_std_min=LO, log_std_max=HI, delta=d)


def soft(z):
    return era_torch.softmax_logits(z, target_entropy=1.0, tau=4.0)


def equal(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    assert torch.equal(a, b), (a - b).abs().max()


def autograd_grads(f, *args):
    args = [a.detach().clone().requires_grad_() for a in args]
    return torch.autograd.grad(f(*args), args)


def token_batch(gen, n=12, v=7):
    logits = torch.randn(n, v, generator=gen, **F64) * 2
    labels = torch.randint(0, v, (n,), generator=gen)
    ids = torch.randint(0, 3, (n,), generator=gen) * 5 + 1
    ids[torch.rand(n, generator=gen) < 0.2] = -1
    adv = torch.randn(n, generator=gen, **F64)
    return logits, labels, ids, adv


# ------------------------------------------------------------ reverse mode


def test_grad_vjp_jacrev_gaussian(gen):
    z = torch.randn(5, 4, generator=gen, **F64) * 2
    w = torch.randn(5, 4, generator=gen, **F64)
    for d in (0.25, torch.tensor(-0.1, **F64), torch.linspace(-0.3, 0.2, 5, **F64)):
        loss = lambda z: (gauss(z, d) * w).sum()  # noqa: E731
        equal(torch.func.grad(loss)(z), autograd_grads(loss, z)[0])
        out, vjp_fn = torch.func.vjp(lambda z: gauss(z, d), z)
        equal(out, gauss(z, d))
        equal(vjp_fn(w)[0], autograd_grads(loss, z)[0])
        jac = torch.func.jacrev(lambda z: gauss(z, d))(z)
        equal(jac, torch.autograd.functional.jacobian(lambda z: gauss(z, d), z))
        assert jac.abs().sum() > 0
    zt = layouts(z)["permuted"]
    equal(torch.func.grad(lambda z: (gauss(z) * w).sum())(zt), autograd_grads(lambda z: (gauss(z) * w).sum(), zt)[0])


def test_delta_gradient_under_torch_func(gen):
    z = torch.randn(6, 3, generator=gen, **F64)
    w = torch.randn(6, 3, generator=gen, **F64)
    loss = lambda z, d: (gauss(z, d) * w).sum()  # noqa: E731
    for d in (torch.tensor(0.2, **F64), torch.linspace(-0.4, 0.1, 6, **F64)):
        gz, gd = torch.func.grad(loss, argnums=(0, 1))(z, d)
        rz, rd = autograd_grads(loss, z, d)
        equal(gz, rz)
        equal(gd, rd)
        assert gd.abs().sum() > 0
        # d alone, and the Jacobian of the outputs w.r.t. d
        equal(torch.func.grad(lambda d: loss(z, d))(d), rd)
        jd = torch.func.jacrev(lambda d: gauss(z, d))(d)
        equal(jd, torch.autograd.functional.jacobian(lambda d: gauss(z, d), d))
    # through the module's delta buffer (torch.func.functional_call)
    head = era_torch.EraGaussian(3, H0, log_std_min=LO, log_std_max=HI)
    d = torch.tensor(-0.2, **F64)
    g = torch.func.grad(lambda d: (torch.func.functional_call(head, {"delta": d}, (z,)) * w).sum())(d)
    equal(g, autograd_grads(loss, z, d)[1])


def test_grad_vjp_jacrev_softmax(gen):
    z = torch.randn(4, 6, generator=gen, **F64) * 3
    w = torch.randn(4, 6, generator=gen, **F64)
    loss = lambda z: (soft(z) * w).sum()  # noqa: E731
    g = torch.func.grad(loss)(z)
    equal(g, autograd_grads(loss, z)[0])
    assert g.abs().sum() > 0
    equal(torch.func.vjp(soft, z)[1](w)[0], g)
    equal(torch.func.jacrev(soft)(z), torch.autograd.functional.jacobian(soft, z))
    equal(torch.func.jacrev(soft)(z[0]), torch.autograd.functional.jacobian(soft, z[0]))


@pytest.mark.parametrize("topk", [0, 3])
def test_grad_jacrev_token(gen, topk):
    logits, labels, ids, adv = token_batch(gen)
    w = torch.randn(12, generator=gen, **F64)

    def outs(lg, a):
        lp, _, _, a2 = era_torch.token_logprobs(lg, labels, ids, a, vocab_topk=topk, **TOKEN_CFG)
        return lp, a2

    loss = lambda lg, a: (outs(lg, a)[0] * w).sum() + (outs(lg, a)[1] * w).sum()  # noqa: E731
    gl, ga = torch.func.grad(loss, argnums=(0, 1))(logits, adv)
    rl, ra = autograd_grads(loss, logits, adv)
    equal(gl, rl)
    equal(ga, ra)
    assert gl.abs().sum() > 0 and not torch.equal(ga, w)  # the scale acts on the advantages
    lp_of = lambda lg: outs(lg, adv)[0]  # noqa: E731
    equal(torch.func.jacrev(lp_of)(logits), torch.autograd.functional.jacobian(lp_of, logits))


# ------------------------------------------------------------------- vmap


def test_vmap_gaussian_matches_a_loop(gen):
    z = torch.randn(3, 5, 4, generator=gen, **F64) * 2
    per_example = torch.linspace(-0.3, 0.2, 3, **F64)
    per_row = torch.linspace(-0.5, 0.3, 15, **F64).reshape(3, 5)
    loop = lambda d: torch.stack([gauss(z[b], d(b)) for b in range(3)])  # noqa: E731
    # a float delta, a batched scalar delta, a batched per-row delta, an unbatched per-row delta
    equal(torch.func.vmap(gauss)(z), loop(lambda b: 0.25))
    equal(torch.func.vmap(gauss)(z, per_example), loop(lambda b: per_example[b]))
    equal(torch.func.vmap(gauss)(z, per_row), loop(lambda b: per_row[b]))
    equal(torch.func.vmap(gauss, in_dims=(0, None))(z, per_row[1]), loop(lambda b: per_row[1]))
    equal(torch.func.vmap(gauss, in_dims=(0, None))(z, per_example[2]), loop(lambda b: per_example[2]))
    # only delta batched; the batch axis elsewhere than first; nested vmap (one row per call)
    equal(torch.func.vmap(gauss, in_dims=(None, 0))(z[0], per_example),
          torch.stack([gauss(z[0], d) for d in per_example]))
    equal(torch.func.vmap(gauss, in_dims=(1, None), out_dims=1)(z, per_row[:, 0]),
          torch.stack([gauss(z[:, i], per_row[:, 0]) for i in range(5)], 1))
    equal(torch.func.vmap(torch.func.vmap(gauss))(z, per_row), loop(lambda b: per_row[b]))
    # the registered op itself batches too
    op = torch.ops.era.gaussian_log_std.default
    equal(torch.func.vmap(op, in_dims=(0, 0, None, None, None))(z, per_example, H0, LO, HI),
          loop(lambda b: per_example[b]))


def test_vmap_softmax_and_entropies_match_a_loop(gen):
    z = torch.randn(3, 4, 6, generator=gen, **F64) * 3
    equal(torch.func.vmap(soft)(z), torch.stack([soft(r) for r in z]))
    equal(torch.func.vmap(soft, in_dims=2, out_dims=2)(z), torch.stack([soft(z[..., i]) for i in range(6)], 2))
    equal(torch.func.vmap(torch.func.vmap(soft))(z), torch.stack([soft(r) for r in z]))
    mu = torch.randn(3, 4, 6, generator=gen, **F64)
    for f, args in ((era_torch.gaussian_entropy, (z,)),
                    (lambda x: era_torch.softmax_entropy(x, temperature=0.7), (z,)),
                    (lambda m, s: era_torch.truncated_normal_entropy(m, s, -1.0, 2.0), (mu, z))):
        equal(torch.func.vmap(f)(*args), torch.stack([f(*(a[b] for a in args)) for b in range(3)]))
    tn = lambda m, s: era_torch.truncated_normal_entropy(m, s, -1.0, 2.0)  # noqa: E731
    equal(torch.func.vmap(tn, in_dims=(None, 0))(mu[0], z), torch.stack([tn(mu[0], s) for s in z]))


@pytest.mark.parametrize("topk", [0, 3])
def test_vmap_token_matches_a_loop(gen, topk):
    b, n, v = 3, 10, 6
    logits = torch.randn(b, n, v, generator=gen, **F64) * 2
    labels = torch.randint(0, v, (b, n), generator=gen)
    ids = torch.randint(0, 2, (b, n), generator=gen)  # the same ids in every example: separate responses
    ids[:, -2:] = -1
    adv = torch.randn(b, n, generator=gen, **F64).abs()
    f = lambda lg, y, r, a: era_torch.token_outputs(lg, y, r, a, vocab_topk=topk, **TOKEN_CFG)  # noqa: E731
    out = torch.func.vmap(f)(logits, labels, ids, adv)
    loop = [f(logits[i], labels[i], ids[i], adv[i]) for i in range(b)]
    for j in range(5):
        equal(out[j], torch.stack([o[j] for o in loop]))
    # one call over all examples would merge their equal ids: different response entropies
    merged = f(logits.reshape(-1, v), labels.reshape(-1), ids.reshape(-1), adv.reshape(-1))
    assert not torch.equal(merged[4], out[4].reshape(-1))
    # unbatched ids, labels and advantages (one response structure, several logits)
    out = torch.func.vmap(f, in_dims=(0, None, None, None))(logits, labels[0], ids[0], adv[0])
    loop = [f(logits[i], labels[0], ids[0], adv[0]) for i in range(b)]
    for j in range(5):
        equal(out[j], torch.stack([o[j] for o in loop]))
    # nested vmap: [2, 3] examples of 5 tokens
    out = torch.func.vmap(torch.func.vmap(f))(logits.reshape(2, 3, 5, v), labels.reshape(2, 3, 5),
                                              ids.reshape(2, 3, 5), adv.reshape(2, 3, 5))
    loop = [f(logits.reshape(-1, 5, v)[i], labels.reshape(-1, 5)[i], ids.reshape(-1, 5)[i], adv.reshape(-1, 5)[i])
            for i in range(6)]
    for j in range(5):
        equal(out[j].reshape(6, 5), torch.stack([o[j] for o in loop]))
    # vmap over the tokens: every call sees a single token, its own response
    out = torch.func.vmap(f)(logits[0], labels[0], ids[0], adv[0])
    loop = [f(logits[0, t], labels[0, t], ids[0, t], adv[0, t]) for t in range(n)]
    for j in range(5):
        equal(out[j], torch.stack([o[j] for o in loop]))


def test_vmap_token_rejects_ids_that_cannot_be_separated(gen):
    logits = torch.randn(2, 3, 5, generator=gen, **F64)
    labels = torch.zeros(2, 3, dtype=torch.int64)
    ids = torch.full((2, 3), 2**62, dtype=torch.int64)
    with pytest.raises(era_torch.EraError, match="too large") as e:
        torch.func.vmap(lambda *a: era_torch.token_logprobs(*a))(logits, labels, ids, torch.ones(2, 3, **F64))
    assert e.value.status == "ERA_STATUS_INVALID_VALUE"
    # under an outer vmap the rule cannot inspect the ids: the library rejects them instead
    nested = torch.func.vmap(torch.func.vmap(lambda *a: era_torch.token_logprobs(*a)))
    with pytest.raises(era_torch.EraError) as e:
        nested(logits.reshape(1, 2, 3, 5), labels.reshape(1, 2, 3), ids.reshape(1, 2, 3), torch.ones(1, 2, 3, **F64))
    assert e.value.status == "ERA_STATUS_INVALID_VALUE" and "too large" not in str(e.value)
    # the library's own error for an invalid id still comes through
    with pytest.raises(era_torch.EraError) as e:
        torch.func.vmap(lambda *a: era_torch.token_logprobs(*a))(logits, labels, ids * 0 - 2, torch.ones(2, 3, **F64))
    assert e.value.status == "ERA_STATUS_INVALID_VALUE"


# ----------------------------------------------------- per-example gradients


def test_per_example_gradients_gaussian(gen):
    z = torch.randn(4, 3, 5, generator=gen, **F64) * 2
    w = torch.randn(3, 5, generator=gen, **F64)
    d = torch.linspace(-0.3, 0.2, 4, **F64)
    loss = lambda z, d: (gauss(z, d) * w).sum()  # noqa: E731
    grad = torch.func.grad(loss, argnums=(0, 1))
    for in_dims, dd in (((0, 0), d), ((0, None), d[1])):  # per-example delta; one delta for all
        gz, gd = torch.func.vmap(grad, in_dims=in_dims)(z, dd)
        loop = [autograd_grads(loss, z[b], d[b] if in_dims[1] == 0 else dd) for b in range(4)]
        equal(gz, torch.stack([g[0] for g in loop]))
        equal(gd, torch.stack([g[1] for g in loop]))  # the sum over an example's rows, in order
        assert gd.abs().min() > 0
    # per-row delta, and a float delta
    rows = torch.linspace(-0.4, 0.1, 12, **F64).reshape(4, 3)
    gz, gd = torch.func.vmap(grad)(z, rows)
    for b in range(4):
        rz, rd = autograd_grads(loss, z[b], rows[b])
        equal(gz[b], rz)
        equal(gd[b], rd)
    gz = torch.func.vmap(torch.func.grad(lambda z: (gauss(z) * w).sum()))(z)
    equal(gz, torch.stack([autograd_grads(lambda z: (gauss(z) * w).sum(), r)[0] for r in z]))


def test_per_example_gradients_softmax_and_token(gen):
    z = torch.randn(4, 3, 6, generator=gen, **F64) * 3
    w = torch.randn(3, 6, generator=gen, **F64)
    loss = lambda z: (soft(z) * w).sum()  # noqa: E731
    equal(torch.func.vmap(torch.func.grad(loss))(z), torch.stack([autograd_grads(loss, r)[0] for r in z]))
    logits = torch.randn(3, 8, 5, generator=gen, **F64) * 2
    labels = torch.randint(0, 5, (3, 8), generator=gen)
    ids = torch.tensor([0, 0, 0, 1, 1, 1, 1, -1]).expand(3, 8)
    adv = torch.randn(3, 8, generator=gen, **F64)

    def tok_loss(lg, y, r, a):
        lp, _, _, a2 = era_torch.token_logprobs(lg, y, r, a, **TOKEN_CFG)
        return -(lp * a2).sum()

    g = torch.func.vmap(torch.func.grad(tok_loss))(logits, labels, ids, adv)
    for b in range(3):
        ref = autograd_grads(lambda lg: tok_loss(lg, labels[b], ids[b], adv[b]), logits[b])[0]
        equal(g[b], ref)
    assert g[:, -1].abs().sum() == 0 and g.abs().sum() > 0  # the masked token has no gradient


# ------------------------------------------------------------- unsupported


def test_forward_mode_and_double_backward_raise(gen):
    z = torch.randn(3, 4, generator=gen, **F64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.func.jvp's own deprecation notice
        for f in (gauss, soft):
            with pytest.raises(NotImplementedError, match="jvp"):
                torch.func.jvp(f, (z,), (torch.ones_like(z),))
            with pytest.raises(NotImplementedError, match="jvp"):
                torch.func.hessian(lambda z: f(z).sum())(z[0])
    for f in (gauss, soft):
        with pytest.raises(NotImplementedError, match="double backward"):
            torch.func.grad(lambda z: torch.func.grad(lambda z: f(z).pow(2).sum())(z).sum())(z)
        with pytest.raises(NotImplementedError, match="double backward"):
            torch.func.jacrev(torch.func.jacrev(lambda z: f(z).sum()))(z)
        zz = z.clone().requires_grad_()
        (g,) = torch.autograd.grad(f(zz).pow(2).sum(), zz, create_graph=True)
        with pytest.raises(NotImplementedError, match="double backward"):
            g.sum().backward()
