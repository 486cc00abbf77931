"""A second, loop-based NumPy float64 implementation of docs/math.md, written
for the tests only (row by row, dictionaries for responses), to cross-check
both the native functions and the pure-JAX reference (reference.py)."""

import math

import numpy as np

L2PE = math.log(2 * math.pi * math.e)


def softmax(z):
    e = np.exp(z - np.max(z))
    return e / e.sum()


def entropy(z):
    p = softmax(z)
    m = np.max(z)
    lse = m + math.log(np.exp(z - m).sum())
    return lse - float(np.sum(p * z))


def gaussian_row(z, h0, lo, hi, delta):
    d = len(z)
    k = h0 + delta - 0.5 * d * L2PE - d * hi
    y = hi + k * softmax(z)
    return np.clip(y, lo, hi)


def softmax_row(z, h0, tau):
    n = len(z)
    c = math.exp(h0 - 1)
    ub = math.log(tau) / tau
    slope = (ub - c / n) / (1 - 1 / n)
    b = (c - slope) / n
    h = slope * softmax(z) + b
    u = -1 - np.log(h)
    w = -1 - np.sqrt(2 * u) - 0.75 * u
    return w - w.min()


def token(logits, labels, ids, adv, k=2.0, omega_low=0.45, omega_high=3.0, rho=0.2, temperature=1.0,
          scaling=True, topk=0):
    """Flat [N, V] inputs; returns (logp, H, c, A', Hresp) as float64 arrays."""
    logits = np.asarray(logits, np.float64) / temperature
    n_tok, v = logits.shape
    h = np.array([entropy(z) for z in logits])
    groups = {}
    for t, r in enumerate(ids):
        if r >= 0:
            groups.setdefault(int(r), []).append(h[t])
    hresp_of = {}
    for r, hs in groups.items():
        kk = max(1, int(math.floor(rho * len(hs))))
        hresp_of[r] = float(np.mean(sorted(hs, reverse=True)[:kk]))
    logp = np.zeros(n_tok)
    c = np.ones(n_tok)
    hresp = np.zeros(n_tok)
    for t in range(n_tok):
        r = int(ids[t])
        if r < 0:
            continue
        hresp[t] = hresp_of[r]
        if adv[t] > 0 and hresp[t] < omega_low:
            c[t] = k
        elif adv[t] > 0 and hresp[t] > omega_high:
            c[t] = 1 / k
        cz = c[t] * logits[t]
        sel = np.ones(v, bool)
        if topk and topk < v:
            order = sorted(range(v), key=lambda i: (-logits[t][i], i))[:topk]
            sel = np.zeros(v, bool)
            sel[order] = True
        y = int(labels[t])
        if not sel[y]:
            logp[t] = -1e4
            continue
        m = cz[sel].max()
        logp[t] = cz[y] - (m + math.log(np.exp(cz[sel] - m).sum()))
    a2 = np.asarray(adv, np.float64) / c if scaling else np.asarray(adv, np.float64)
    return logp, h, c, a2, hresp


def truncated_normal_1d(m, log_std, low, high):
    from math import erfc, exp, log, pi, sqrt

    s = exp(log_std)
    a, b = (low - m) / s, (high - m) / s
    q = lambda x: 0.5 * erfc(x / sqrt(2)) if math.isfinite(x) else (0.0 if x > 0 else 1.0)  # noqa: E731  P(X > x)
    zmass = q(a) - q(b) if a > 0 else (q(-b) - q(-a) if b < 0 else 1.0 - q(-a) - q(b))
    pdf = lambda x: exp(-0.5 * x * x) / sqrt(2 * pi)  # noqa: E731
    xa = a * pdf(a) if math.isfinite(a) else 0.0
    xb = b * pdf(b) if math.isfinite(b) else 0.0
    return 0.5 * log(2 * pi * math.e) + log_std + log(zmass) + (xa - xb) / (2 * zmass)
