"""Score one method's result on a problem: the same metrics for every method, one flat row per method.

Predictive scores (RMSE, NLL, CRPS, coverage and width of central intervals) are computed against the noisy
held-out observations on the test and extrapolation splits; the hidden-state scores against the true states where
the model's hidden state is comparable to them (it observes its first hidden components directly).  Error ranking
(Spearman between each point's predicted uncertainty and the true error of the point prediction) and
out-of-domain detection (AUROC of test against extrapolation points) use the predictive spread for posterior
methods and the error predictor's predicted error / neighbour distance for an error-predictor method (LTAU).
LTAU is calibrated on the first half of the test trajectories (:func:`calibration_half`), so every method's error
scores use only the other half.

Static problems (``problem.task`` ``"regression"`` or ``"classification"``: independent (x, y) pairs) are scored
per point by :func:`score_static`: the same predictive scores for regression, accuracy / NLL / Brier / ECE for
classification; error ranking and out-of-domain detection use the predictive spread (regression) or the
predictive entropy (classification).
"""
import math
import time

import numpy as np
import torch

from ..diagnostics import classification_scores, predictive_entropy, score
from ..infer.ltau import node_errors, node_latent
from ..utils.seeding import param_scope

__all__ = [
    "REFERENCE_TEXT",
    "REFERENCE_TITLE",
    "auroc",
    "calibrate_error_predictor",
    "calibration_half",
    "hidden_comparable",
    "point_errors",
    "predictive_spread",
    "score_result",
    "score_static",
    "spearman",
    "training_mean_rows",
]


PREFIX = {"test": "test", "extrapolation": "extrap"}


def _ranks(x):
    """Ranks 1..n of a 1-D array, ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def spearman(a, b):
    """Spearman rank correlation of two equal-length 1-D arrays (``nan`` if either is constant)."""
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"spearman: lengths differ ({a.size} vs {b.size})")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def auroc(negatives, positives):
    """Area under the ROC curve of scores of negatives (in-domain) against positives (out-of-domain)."""
    neg, pos = np.asarray(negatives, dtype=float).ravel(), np.asarray(positives, dtype=float).ravel()
    if neg.size == 0 or pos.size == 0:
        raise ValueError("auroc: needs at least one negative and one positive score")
    if np.ptp(np.concatenate([neg, pos])) == 0:
        return math.nan
    ranks = _ranks(np.concatenate([neg, pos]))
    return float((ranks[neg.size:].sum() - pos.size * (pos.size + 1) / 2) / (neg.size * pos.size))


def hidden_comparable(model, problem):
    """``(ok, reason)``: whether the model's hidden states can be scored against ``h_true``."""
    if problem.test.h_true is None:
        return False, "the problem has no true hidden states"
    if not model.observes_hidden:
        return False, ("the model reads its outputs through an observation network, so its hidden state is "
                       "only defined up to that map and is not comparable to the true states")
    return True, f"the model observes its first {problem.obs_dim} hidden components directly"


def predictive_spread(y_mean):
    """Predictive spread per point ``(N, T)``: norm over outputs of the std of ``y_mean`` over samples (zero for
    one draw: a point estimate)."""
    return y_mean.std(0).norm(dim=-1) if y_mean.shape[0] > 1 else y_mean.new_zeros(y_mean.shape[1:-1])


def _observed(split):
    return torch.ones(split.y.shape[:2], dtype=torch.bool, device=split.y.device) if split.mask is None else split.mask


#: the report section of :func:`training_mean_rows`
REFERENCE_TITLE = "Reference: the training data's mean"
REFERENCE_TEXT = ("Every held-out observation predicted by a Normal with the training observations' mean and standard "
                  "deviation (per output), the bar below which a model has learned nothing usable; compare its NLL, "
                  "CRPS and coverage with the methods' above.")


def training_mean_rows(problem, num_samples=200, seed=0):
    """Scores of the trivial predictive ``Normal(mean, sd)`` of the training observations (per output), for each
    held-out split of a trajectories problem: one row per split, ``split``, ``NLL``, ``CRPS``, ``cov90``.

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> rows = training_mean_rows(load_problem("chemical", num_train=2, num_test=2, num_extrapolation=2))
        >>> [r["split"] for r in rows], rows[0]["NLL"] > 0
        (['test', 'extrapolation'], True)
    """
    train = problem.train
    observed = _observed(train)
    values = [train.y[..., d][observed if observed.dim() == 2 else observed[..., d]] for d in range(train.y.shape[-1])]
    loc = torch.stack([v.mean() for v in values])
    sd = torch.stack([v.std() for v in values]).clamp(min=torch.finfo(train.y.dtype).eps)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    rows = []
    for name in ("test", "extrapolation"):
        split = getattr(problem, name, None)
        if split is None:
            continue
        shape = (num_samples, *split.y.shape)
        draws = loc + sd * torch.randn(shape, generator=gen, dtype=loc.dtype).to(loc.device)
        pred = {"obs": draws, "y_mean": loc.expand(shape)}
        s = score(pred, split.y, split.mask, noise_scale=sd)
        rows.append({"split": name, "NLL": s["nll"], "CRPS": s["crps"], "cov90": s["coverage_90"]})
    return rows


def _noise_law(model):
    """``noise`` and ``df`` keyword arguments for :func:`~pyro_node_uq.diagnostics.score`: the model's own noise
    law (a Student-t model's NLL is scored with its Student-t density), Normal for a model without one."""
    law = getattr(model, "law", None)
    return {"noise": law.noise, "df": law.df} if law is not None else {}


def score_result(result, problem, predictions, hidden=True):
    """One table row of scores.

    :param result: the :class:`~pyro_node_uq.infer.MethodResult`.
    :param problem: the :class:`~pyro_node_uq.data.Problem`.
    :param dict predictions: split name (``"test"``, ``"extrapolation"``) -> :meth:`MethodResult.predict` output.
    :param bool hidden: score the hidden states against the truth (see :func:`hidden_comparable`).
    :returns: dict of scores: ``elbo``, ``{split}_{metric}``, ``hidden_*``, ``error_spearman``, ``ood_auroc``,
        ``wall_time``, ``num_model_evals``, ``stochastic_dim``.
    """
    if problem.task != "trajectories":
        return score_static(result, problem, predictions)
    row = {"elbo": result.elbo}
    for name, pred in predictions.items():
        split = getattr(problem, name)
        scale = result.model.noise_scale(result.param_state, pred)
        h_true = split.h_true[..., :problem.obs_dim] if hidden and split.h_true is not None else None
        scores = score(pred, split.y, split.mask, noise_scale=scale, h_true=h_true, **_noise_law(result.model))
        for key, value in scores.items():
            key = key if not key.startswith("hidden_") else key.replace("hidden_", "hidden_" + PREFIX[name] + "_", 1)
            row[key if key.startswith("hidden_") else f"{PREFIX[name]}_{key}"] = value
    row.update(_error_scores(result, problem, predictions))
    return _with_cost(row, result)


def _with_cost(row, result):
    row.update(wall_time=result.wall_time, num_model_evals=result.num_model_evals,
               stochastic_dim=result.stochastic_dim)
    return row


def score_static(result, problem, predictions):
    """One table row of scores on a static problem (see the module docstring); keys as :func:`score_result`'s,
    plus ``{split}_accuracy``, ``{split}_brier``, ``{split}_ece`` for classification.

    Example::

        >>> import torch
        >>> from types import SimpleNamespace
        >>> from pyro_node_uq.data import StaticSplit
        >>> split = StaticSplit(x=torch.zeros(2, 1), y=torch.tensor([0, 1]))
        >>> problem = SimpleNamespace(task="classification", test=split)
        >>> result = SimpleNamespace(elbo=None, wall_time=1.0, num_model_evals=3, stochastic_dim=0)
        >>> probs = torch.tensor([[[0.9, 0.1], [0.4, 0.6]]])
        >>> score_static(result, problem, {"test": {"probs": probs}})["test_accuracy"]
        1.0
    """
    row, uncertainty, errors = {"elbo": result.elbo}, {}, {}
    for name, pred in predictions.items():
        split = getattr(problem, name)
        if problem.task == "classification":
            scores = classification_scores(pred["probs"], split.y)
            uncertainty[name] = predictive_entropy(pred["probs"])
            errors[name] = (pred["probs"].mean(0).argmax(-1) != split.y).double()
        else:
            scores = score(pred, split.y, noise_scale=result.model.noise_scale(result.param_state, pred),
                           **_noise_law(result.model))
            uncertainty[name] = predictive_spread(pred["y_mean"])
            target = split.y if split.y_true is None else split.y_true
            errors[name] = (pred["y_mean"].mean(0) - target).norm(dim=-1)
        row.update({f"{PREFIX[name]}_{k}": v for k, v in scores.items()})
    if "test" in uncertainty and "extrapolation" in uncertainty:
        row.update(error_spearman=spearman(uncertainty["test"], errors["test"]),
                   ood_auroc=auroc(uncertainty["test"], uncertainty["extrapolation"]))
    return _with_cost(row, result)


def point_errors(y_mean, split):
    """Per-point errors ``(N, T)`` of the point prediction ``y_mean`` against the split's noise-free truth (its
    noisy observations when it has none), and which points are observed."""
    return node_errors(y_mean, split, target=split.y_true)  # None: node_errors compares against split.y


def calibration_half(split):
    """Number of leading trajectories of ``split`` that calibrate LTAU (and that error scores leave out)."""
    return len(split) // 2 if split.mask is None else 0


def calibrate_error_predictor(result, split):
    """Calibrate ``result.error_predictor`` (LTAU) on the first :func:`calibration_half` trajectories of ``split``
    against the true errors there; every method's error scores leave those trajectories out.

    :returns: a line for the report, or ``None`` when ``split`` has no calibration half.
    """
    half = calibration_half(split)
    if not half:
        return None
    ltau, model, guide = result.error_predictor, result.model, result.guide
    start = time.perf_counter()
    with param_scope(result.param_state):
        errors, _ = point_errors(node_latent(model, guide, split)[1], split)
        ltau.calibrate(ltau.predict_node(model, guide, split)[:half], errors[:half])
    return (f"calibrated (memory {ltau.calibration.memory:.3g}) on the first {half} test trajectories in "
            f"{time.perf_counter() - start:.2f} s; every method's error scores use the other {len(split) - half}")


def _error_scores(result, problem, predictions):
    test, extra = problem.test, problem.extrapolation
    ltau = result.error_predictor
    if ltau is not None:
        with param_scope(result.param_state):
            pred_test = ltau.predict_node(result.model, result.guide, test)
            pred_extra = ltau.predict_node(result.model, result.guide, extra) if extra is not None else None
            _, y_mean = node_latent(result.model, result.guide, test)
        uncertainty, ood_in = pred_test.mean, pred_test.distance
        ood_out = pred_extra.distance if pred_extra is not None else None
    else:
        if "test" not in predictions:
            return {}
        y_mean = predictions["test"]["y_mean"].mean(0)
        uncertainty = predictive_spread(predictions["test"]["y_mean"])
        extra_pred = predictions.get("extrapolation")
        ood_in, ood_out = uncertainty, predictive_spread(extra_pred["y_mean"]) if extra_pred is not None else None
    errors, observed = point_errors(y_mean, test)
    seen = observed & _observed(test)
    seen[:calibration_half(test)] = False
    row = {"error_spearman": spearman(uncertainty.detach()[seen], errors[seen])}
    if ood_out is not None and extra is not None:  # no extrapolation split: nothing to detect
        row["ood_auroc"] = auroc(ood_in.detach()[seen], ood_out.detach()[_observed(extra)])
    return row
