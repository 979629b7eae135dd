"""LTAU for NODE models: a sample is a (trajectory, time) point.

Its stable key is ``trajectory_id * T + time_index``; its error is the Euclidean norm over the observed outputs of
``y_mean - y``; its latent features are the hidden state at that time plus the time itself (the horizon: errors
grow along a trajectory, and equal hidden states early and late need not have equal errors), and optionally the
inputs at that time.
"""
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger

from ..distributed import gather_shards

__all__ = ["NODETrainingMonitor", "node_errors", "node_features", "node_keys", "node_latent"]


def node_keys(split):
    """Stable integer keys ``(N, T)`` of the split's (trajectory, time) points."""
    ids = torch.as_tensor(split.ids, dtype=torch.long).cpu()  # keys index the CPU-side recorder and faiss index
    T = len(split.t)
    return ids[:, None] * T + torch.arange(T)


def _window_mean(values, weights, window):
    """Weighted moving average over the time axis (-2) within +-``window`` steps."""
    if window == 0:
        return values
    pad = lambda v: torch.nn.functional.pad(v.cumsum(-2), (0, 0, 1, 0))
    cv, cw = pad(values * weights), pad(weights)
    T = values.shape[-2]
    steps = torch.arange(T, device=values.device)
    hi, lo = (steps + window + 1).clamp(max=T), (steps - window).clamp(min=0)
    total = cw[..., hi, :] - cw[..., lo, :]
    return (cv[..., hi, :] - cv[..., lo, :]) / total.clamp(min=1)


def node_errors(y_mean, split, target=None, window=0):
    """Per-point errors ``(N, T)`` and which points are observed ``(N, T)``.

    The error of a point is the Euclidean norm over its observed outputs of the residual ``y_mean - y``, or with
    ``window > 0`` of the residual averaged over the observed times within ``+-window`` steps: the model's error
    is smooth in time while observation noise is not, so the window separates the two (noise shrinks by about
    ``sqrt(2 window + 1)``).

    :param torch.Tensor y_mean: predictions ``(..., N, T, obs_dim)``; leading (particle) dims are averaged.
    :param split: the :class:`~pyro_node_uq.data.Split` whose ``y`` (and ``mask``) are compared against.
    :param target: compare against this ``(N, T, obs_dim)`` tensor instead of ``split.y`` (e.g. ``split.y_true``).
    :param int window: half-width of the residual's moving average over time (0: the point's own residual).
    """
    if int(window) < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    target = split.y if target is None else target
    if y_mean.shape[-3:] != target.shape:
        raise ValueError(f"y_mean: expected trailing shape {tuple(target.shape)} (the split's trajectories, times, "
                         f"outputs), got {tuple(y_mean.shape)}")
    y_mean = y_mean.detach().reshape((-1,) + target.shape).mean(0)
    mask = torch.ones(target.shape, dtype=torch.bool, device=target.device) if split.mask is None else split.mask
    if mask.dim() == 2:
        mask = mask[..., None].expand(target.shape)
    residual = torch.where(mask, y_mean - target.to(y_mean.dtype), torch.zeros_like(y_mean))
    residual = _window_mean(residual, mask.to(residual.dtype), int(window))
    errors = torch.where(mask, residual ** 2, torch.zeros_like(residual)).sum(-1).sqrt()
    if not torch.isfinite(errors).all():
        raise FloatingPointError("y_mean: the model's predictions contain NaN or inf (did training diverge?)")
    return errors, mask.any(-1)


def node_features(hidden, t, x=None):
    """Latent features ``(N, T, H + 1 [+ D])``: the hidden state ``(N, T, H)``, the time and the inputs.

    :param torch.Tensor hidden: hidden states ``(N, T, H)``.
    :param torch.Tensor t: times ``(T,)``.
    :param torch.Tensor x: inputs ``(N, T, D)`` driving the vector field at that time, or ``None``.  For a
        controlled NODE the state alone does not say where the dynamics go next: equal hidden states under
        different inputs can have very different errors.
    """
    t = t.to(hidden.dtype)
    parts = [hidden, t[:, None].expand(hidden.shape[:-2] + (len(t), 1))]
    if x is not None:
        if x.shape[:-1] != hidden.shape[:-1]:
            raise ValueError(f"x: expected inputs of shape {tuple(hidden.shape[:-1])} + (D,), got {tuple(x.shape)}")
        parts.append(x.to(hidden.dtype))
    return torch.cat(parts, -1)


@torch.no_grad()
def node_latent(model, guide, split):
    """Hidden states and predictions ``(hidden, y_mean)`` of ``model`` at the guide's median (no gradient).

    :param model: a :class:`~pyro_node_uq.models.NODEModel` (with ``record=True``).
    :param guide: a fitted autoguide (anything with ``median(*args, **kwargs)``).
    """
    params = guide.median(*split.args, **split.kwargs)
    trace = poutine.trace(poutine.condition(model, data=params)).get_trace(*split.args, **split.kwargs)
    for site in ("hidden", "y_mean"):
        if site not in trace.nodes:
            raise ValueError(f"model: no deterministic site {site!r}; build the NODEModel with record=True")
    return trace.nodes["hidden"]["value"], trace.nodes["y_mean"]["value"]


class NODETrainingMonitor(Messenger):
    """Feed a :class:`LossTrajectoryRecorder` during NODE training, as a Pyro messenger plus a step callback.

    Inside ``with monitor:`` the messenger keeps the model's ``"y_mean"`` from each training step, so the
    per-point errors cost nothing extra (they are the errors of the parameters that step evaluated; for
    ``AutoDelta`` that is the MAP prediction).  Called as ``monitor(step, loss)`` (the ``callback`` of
    :func:`~pyro_node_uq.infer.fit_svi`) it records them every ``every`` steps from step ``start`` on.
    With ``model`` and ``guide`` given it instead evaluates the guide's median (one extra solve per record, no
    gradient): use that for guides whose training samples are noisy (``AutoNormal``...).

    :param recorder: the :class:`LossTrajectoryRecorder` (or an :class:`LTAU`, whose recorder is used).
    :param split: the training :class:`~pyro_node_uq.data.Split`.
    :param int every: record every ``every`` steps.
    :param int start: first step recorded (a burn-in).
    :param int window: residual moving-average half-width of the errors (see :func:`node_errors`).

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> from pyro_node_uq.methods import run_map
        >>> from pyro_node_uq.infer.ltau import LossTrajectoryRecorder
        >>> problem = load_problem("chemical", num_train=2)
        >>> rec = LossTrajectoryRecorder()
        >>> monitor = NODETrainingMonitor(rec, problem.train)
        >>> with monitor:
        ...     _ = run_map(problem.default_model(), problem.train, num_steps=3, callback=monitor,
        ...                 progress_bar=False)
        >>> rec.num_samples, int(rec.counts(rec.keys[:1]))
        (82, 3)
    """

    def __init__(self, recorder, split, every=1, start=0, window=0, model=None, guide=None):
        super().__init__()
        if int(every) < 1 or int(start) < 0:
            raise ValueError(f"every must be >= 1 and start >= 0, got every={every}, start={start}")
        if (model is None) != (guide is None):
            raise ValueError("model, guide: give both (to evaluate the guide's median) or neither")
        self.recorder = getattr(recorder, "recorder", recorder)
        if int(window) < 0:
            raise ValueError(f"window must be >= 0, got {window}")
        self.split, self.every, self.start, self.window = split, int(every), int(start), int(window)
        self.model, self.guide = model, guide
        self.keys = node_keys(split)
        self._latest = None

    def _postprocess_message(self, msg):
        if msg["name"] == "y_mean" and msg["type"] == "sample":
            self._latest = msg["value"].detach()

    def __call__(self, step, loss=None):
        if step < self.start or (step - self.start) % self.every:
            return False
        if self.model is not None:
            _, y_mean = node_latent(self.model, self.guide, self.split)
        elif self._latest is None:
            raise RuntimeError("NODETrainingMonitor: no 'y_mean' was seen; train inside `with monitor:` "
                               "or pass model= and guide=")
        else:  # under data-parallel SVI each rank saw its shard of the trajectories: put them back together
            y_mean = self._latest if self._latest.shape[-3] == len(self.split) else gather_shards(self._latest, -3)
        errors, observed = node_errors(y_mean, self.split, window=self.window)
        self.recorder.record(self.keys[observed], errors[observed])
        self._latest = None
        return False

