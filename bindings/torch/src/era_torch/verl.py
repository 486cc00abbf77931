"""ERA's token head in verl (tested with verl 0.9.1 and 0.8.0 for the engine path, 0.7.1 for
the legacy actor).

verl >= 0.8 (the engine workers):

- Importing this module registers a policy loss named ``era`` in verl's policy-loss registry
  (``actor.policy_loss.loss_mode=era``). Its settings are the fields of
  :func:`policy_loss_config_class` (``era_k``, ``era_lb``, ``era_ub``, ``era_topk``,
  ``era_top_fraction``, ``era_advantage_scaling``), selected with
  ``actor.policy_loss._target_=era_torch.verl.EraPolicyLossConfig``.
- :func:`install` wraps the ``language_model`` engines of verl's ``EngineRegistry`` so that
  their ``prepare_model_outputs`` computes, in one read of the logits per token and at the
  per-sample temperature, the label's log-prob at the three scales ERA may choose, the
  entropy and (when verl asks for it) the sum of squared probabilities, through the library.
  ``log_probs`` stays the plain log-prob (scale 1): old log-probs, reference log-probs and
  the KL loss see what they saw before. Run it in every worker process, e.g. with Ray's
  ``runtime_env={"worker_process_setup_hook": "era_torch.verl.install"}``.
- During an actor update (a micro-batch that holds ``advantages``) the engine leaves the
  extra per-token columns for the policy loss of the same micro-batch: verl's ``ppo_loss``
  hands a policy loss per-token tensors only, so the ``era`` loss takes them from the engine
  of its thread (and raises if there are none: the engine was not installed, or the
  configuration differs). It then makes ERA's scale decision (each response's top-20%
  entropy mean against ``era_lb`` / ``era_ub``, the sign of the advantage), takes the
  selected column as the log-prob and the scaled advantages, and computes verl's own
  ``vanilla`` clipped objective with them.

verl 0.7 (the legacy ``dp_actor``): :func:`verl_era_logprobs` replaces the ERA step of
``DataParallelPPOActor._forward_micro_batch``, as before.

No math here: the library computes the columns, the entropies and the decision; verl computes
the objective.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from typing import Optional

import torch

from ._defaults import TOKEN
from ._token_split import token_decide, token_logprob_columns
from ._verl_legacy import EraLogprobs, response_ids_from_mask, verl_era_logprobs

__all__ = [
    "EraLogprobs",
    "EraSettings",
    "compute_policy_loss_era",
    "install",
    "policy_loss_config_class",
    "register",
    "response_ids_from_mask",
    "settings",
    "verl_era_logprobs",
]

#: The name of the policy loss in verl's registry.
LOSS_NAME = "era"


@dataclass(frozen=True)
class EraSettings:
    """What the engine needs to compute the columns: the scale factor and the vocabulary top-K
    (the entropy, the decision and the advantages are the loss's)."""

    k: float = float(TOKEN.k)
    vocab_topk: int = int(TOKEN.vocab_topk)


_SETTINGS = {"value": None}


def settings() -> EraSettings:
    """The engine's settings: those given to :func:`install`, else ``$ERA_VERL_K`` and
    ``$ERA_VERL_TOPK`` (for a worker setup hook, which takes no arguments), else the library's
    defaults (``k = 2``, full vocabulary)."""
    if _SETTINGS["value"] is None:
        _SETTINGS["value"] = EraSettings(float(os.environ.get("ERA_VERL_K", TOKEN.k)),
                                         int(os.environ.get("ERA_VERL_TOPK", TOKEN.vocab_topk)))
    return _SETTINGS["value"]


# ------------------------------------------------------------------ the policy loss


def _config_fields():
    # the official recipe's settings (docs/llm-rl.md): k = 2, omega_low = 0.45, omega_high = 3.0,
    # the top 20% of each response, advantage scaling on; top-K 0 = the full vocabulary
    return (("era_k", float, float(TOKEN.k)), ("era_lb", float, float(TOKEN.omega_low)),
            ("era_ub", float, float(TOKEN.omega_high)), ("era_topk", int, int(TOKEN.vocab_topk)),
            ("era_top_fraction", float, float(TOKEN.top_fraction)),
            ("era_advantage_scaling", bool, bool(TOKEN.advantage_scaling)))


_CONFIG_CLASS = {}


def policy_loss_config_class():
    """verl's ``PolicyLossConfig`` with ERA's fields (``era_k``, ``era_lb``, ``era_ub``,
    ``era_topk``, ``era_top_fraction``, ``era_advantage_scaling``; the library's defaults),
    ``loss_mode`` defaulting to ``era``. verl instantiates it from
    ``actor.policy_loss._target_=era_torch.verl.EraPolicyLossConfig``."""
    if "cls" not in _CONFIG_CLASS:
        import dataclasses

        from verl.workers.config.actor import PolicyLossConfig

        fields = [(name, typ, dataclasses.field(default=default)) for name, typ, default in _config_fields()]
        fields.append(("loss_mode", str, dataclasses.field(default=LOSS_NAME)))
        cls = dataclasses.make_dataclass("EraPolicyLossConfig", fields, bases=(PolicyLossConfig,))
        cls.__module__ = __name__
        cls.__doc__ = "verl's PolicyLossConfig with the ERA token head's settings (era_torch.verl)."
        _CONFIG_CLASS["cls"] = cls
    return _CONFIG_CLASS["cls"]


def __getattr__(name):
    if name == "EraPolicyLossConfig":  # built on first use: it subclasses verl's config
        return policy_loss_config_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _loss_setting(config, name):
    pl = getattr(config, "policy_loss", None) if config is not None else None
    default = {n: d for n, _, d in _config_fields()}[name]
    if pl is None:
        return default
    value = pl.get(name, default) if hasattr(pl, "get") else getattr(pl, name, default)
    return default if value is None else value


class _Pending(threading.local):
    """The per-token columns the engine computed for the micro-batch whose loss comes next."""

    item = None


_PENDING = _Pending()


def _leave_for_loss(columns, entropy, micro_batch, used: EraSettings) -> None:
    _PENDING.item = (columns, entropy, micro_batch, used)


def _take_for_loss(shape):
    item, _PENDING.item = _PENDING.item, None
    if item is None:
        raise RuntimeError(
            "era_torch.verl: the 'era' policy loss found no ERA columns from this micro-batch's forward. "
            "Run era_torch.verl.install() in every worker process (before its engine is built), e.g. with "
            "Ray's runtime_env={'worker_process_setup_hook': 'era_torch.verl.install'}, and keep "
            "use_remove_padding=True and use_fused_kernels=False (ERA reads the logits).")
    columns, entropy, micro_batch, used = item
    from verl.workers.utils.padding import no_padding_2_padding

    columns = no_padding_2_padding(columns, micro_batch)
    entropy = no_padding_2_padding(entropy, micro_batch)
    if tuple(columns.shape[:-1]) != tuple(shape) or tuple(entropy.shape) != tuple(shape):
        raise RuntimeError(f"era_torch.verl: the ERA columns have shape {tuple(columns.shape)}, but the loss's "
                           f"log-probs have shape {tuple(shape)}: they come from another micro-batch")
    return columns, entropy, used


def compute_policy_loss_era(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config=None,
    rollout_is_weights: Optional[torch.Tensor] = None,
):
    """verl's policy loss ``era``: PPO's clipped objective on ERA's scaled log-probs and
    advantages (docs/math.md#token-head).

    ``log_prob`` (the plain log-prob, ``(bsz, response_length)``) comes from verl; the
    columns at the scales ``1, k, 1/k`` and the entropies come from the installed engine
    (:func:`install`) for the same micro-batch. Each response (a row of ``response_mask``)
    takes the mean entropy of its top ``era_top_fraction`` tokens; a token with a positive
    advantage is sharpened (``c = k``) below ``era_lb`` and flattened (``c = 1/k``) above
    ``era_ub``. The objective is verl's ``vanilla`` loss with the selected column as the
    log-prob and ``A/c`` as the advantage (with ``era_advantage_scaling``).

    Returns:
      ``(pg_loss, metrics)`` as every verl policy loss; the metrics add ``actor/era_sharpen``
      and ``actor/era_flatten`` (fractions of response tokens) and
      ``actor/era_response_entropy`` (mean over responses).
    """
    from verl.trainer.ppo.core_algos import get_policy_loss_fn

    columns, entropy, used = _take_for_loss(log_prob.shape)
    k = float(_loss_setting(config, "era_k"))
    topk = int(_loss_setting(config, "era_topk"))
    if (k, topk) != (used.k, used.vocab_topk):
        raise RuntimeError(
            f"era_torch.verl: the engine computed the columns with k = {used.k}, top-K = {used.vocab_topk}, but "
            f"the policy loss is configured with era_k = {k}, era_topk = {topk}: pass the same values to "
            "era_torch.verl.install() (or $ERA_VERL_K, $ERA_VERL_TOPK)")
    mask = response_mask.bool()
    rows = torch.arange(mask.shape[0], device=mask.device).unsqueeze(1).expand_as(mask)
    ids = torch.where(mask, rows, torch.full_like(rows, -1))
    dec = token_decide(
        entropy.detach(), ids, advantages, columns,
        k=k, omega_low=float(_loss_setting(config, "era_lb")), omega_high=float(_loss_setting(config, "era_ub")),
        top_fraction=float(_loss_setting(config, "era_top_fraction")),
        advantage_scaling=bool(_loss_setting(config, "era_advantage_scaling")))
    logp = dec.logprobs.to(log_prob.dtype)
    adv = dec.advantages.to(advantages.dtype)
    vanilla = get_policy_loss_fn("vanilla")
    pg_loss, metrics = vanilla(old_log_prob=old_log_prob, log_prob=logp, advantages=adv, response_mask=response_mask,
                               loss_agg_mode=loss_agg_mode, config=config, rollout_is_weights=rollout_is_weights)
    n = mask.sum().clamp(min=1)
    metrics = dict(metrics)
    metrics["actor/era_sharpen"] = ((dec.scale == k) & mask).sum().item() / n.item()
    metrics["actor/era_flatten"] = ((dec.scale < 1) & mask).sum().item() / n.item()
    counts = mask.sum(1)
    per_response = (dec.response_entropy * mask).sum(1)[counts > 0] / counts[counts > 0]
    metrics["actor/era_response_entropy"] = per_response.mean().item() if per_response.numel() else 0.0
    return pg_loss, metrics


def register() -> None:
    """Registers :func:`compute_policy_loss_era` as verl's policy loss ``era`` (done on
    import where verl is installed; again is harmless)."""
    from verl.trainer.ppo import core_algos

    registry = getattr(core_algos, "POLICY_LOSS_REGISTRY", None)
    if registry is not None and registry.get(LOSS_NAME) is compute_policy_loss_era:
        return
    core_algos.register_policy_loss(LOSS_NAME)(compute_policy_loss_era)


# ------------------------------------------------------------------ the engine


class EraOutputsMixin:
    """Put before a verl language-model engine class: its ``prepare_model_outputs`` computes
    the outputs through the library (padding-free layout, the logits whole), adds ERA's
    columns, and leaves them for the ``era`` policy loss of an actor update. Other layouts
    (fused kernels, which never materialise the logits; padded inputs; top-K distillation)
    keep the engine's own outputs, and the ``era`` loss then raises."""

    def prepare_model_outputs(self, output, output_args, micro_batch, logits_processor_func):
        from verl.utils import tensordict_utils as tu

        def flag(key, default):
            return tu.get_non_tensor_data(data=micro_batch, key=key, default=default)

        if (not flag("use_remove_padding", True) or flag("use_fused_kernels", False)
                or flag("distillation_use_topk", False) or flag("distillation_only", False)
                or getattr(output, "logits", None) is None):
            if not getattr(self, "_era_warned", False):
                warnings.warn("era_torch.verl: ERA needs use_remove_padding=True, use_fused_kernels=False and no "
                              "distillation: this engine keeps its own outputs", stacklevel=2)
                self._era_warned = True
            return super().prepare_model_outputs(output, output_args, micro_batch, logits_processor_func)
        logits = output.logits.squeeze(0)  # (total_nnz, vocab), before the temperature
        if hasattr(logits, "full_tensor"):  # a vocabulary-sharded DTensor under tensor parallelism
            logits = logits.full_tensor()
        temperature = output_args.get("temperature_rmpad")
        used = settings()
        cols = token_logprob_columns(
            logits, output_args["input_ids_rmpad_rolled"],
            temperature=temperature if isinstance(temperature, torch.Tensor) else None,
            k=used.k, vocab_topk=used.vocab_topk, sum_sq=bool(flag("calculate_sum_pi_squared", False)))
        pad = output_args["pad_size"]
        offsets = micro_batch["input_ids"].offsets()

        def nested(v):
            return torch.nested.nested_tensor_from_jagged(self._gather_and_unpad_packed(v, pad), offsets)

        out = {"log_probs": nested(cols.columns[:, 0])}
        entropy = nested(cols.entropy)
        if flag("calculate_entropy", False):
            out["entropy"] = entropy
        if cols.sum_sq is not None:
            out["sum_pi_squared"] = nested(cols.sum_sq)
        columns = nested(cols.columns)
        out["era_columns"] = columns
        if "advantages" in micro_batch.keys():
            _leave_for_loss(columns, entropy, micro_batch, used)
        return out


def install(k: Optional[float] = None, vocab_topk: Optional[int] = None, model_type: str = "language_model") -> list:
    """Registers the ``era`` policy loss and wraps every engine class registered for
    ``model_type`` in verl's ``EngineRegistry`` with :class:`EraOutputsMixin` (once). ``k`` and
    ``vocab_topk`` must equal the policy loss's ``era_k`` and ``era_topk`` (None: the
    environment or the library's defaults, see :func:`settings`). Returns the wrapped classes."""
    from verl.workers.engine.base import EngineRegistry

    register()
    base = settings()
    _SETTINGS["value"] = EraSettings(float(base.k if k is None else k),
                                     int(base.vocab_topk if vocab_topk is None else vocab_topk))
    wrapped = []
    for backend, by_device in EngineRegistry._engines.get(model_type, {}).items():
        for key, cls in list(by_device.items()):
            if issubclass(cls, EraOutputsMixin):
                continue
            by_device[key] = type("Era" + cls.__name__, (EraOutputsMixin, cls), {"__module__": __name__})
            wrapped.append(by_device[key])
    return wrapped


try:  # importing the module registers the loss where verl is installed
    import verl.trainer.ppo.core_algos  # noqa: F401
except ImportError:
    pass
else:
    register()
