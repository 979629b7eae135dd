"""Static (x, y) problems for models of one input -> one output (the SDE-BNN): a 1-D regression with a gap in
its inputs and a 2-D three-class spiral, each with train / test / out-of-domain splits (see :data:`GAP_REGRESSION`
and :data:`SPIRALS`)."""
import math
from dataclasses import dataclass

import torch

from .problem import Problem, Rows

__all__ = ["StaticProblem", "StaticSplit", "gap_regression", "spirals"]

#: description of ``gap_regression``
GAP_REGRESSION = """``y = sin(2.5 x) + 0.3 x^2 + noise`` (std 0.08); training and test inputs uniform on
``[-1.8, -0.4] U [0.6, 1.8]``; the "extrapolation" split covers the gap ``(-0.4, 0.6)`` and the flanks
``[-2.4, -1.8] U [1.8, 2.4]``, where no input was seen."""

#: description of ``spirals``
SPIRALS = """Points at radius ``r`` and angle ``a`` in the plane belong to class ``floor(((a + 1.5 r) mod 2 pi)
/ (2 pi / 3))``: three interleaved spiral arms.  Train and test radii are uniform on ``[0.3, 2]``; the
"extrapolation" split lies at radii ``[2.5, 3.5]`` (same labelling rule, never seen).  A share ``flip`` of the
training and test labels is resampled uniformly (label noise)."""


@dataclass
class StaticSplit(Rows):
    """A batch of independent (input, target) pairs.

    :ivar x: inputs ``(N, input_dim)``.
    :ivar y: targets ``(N, obs_dim)`` (regression) or integer labels ``(N,)`` (classification).
    :ivar y_true: noise-free targets (regression) or ``None``.
    :ivar ids: stable integer id of each pair ``(N,)``.
    """

    x: torch.Tensor
    y: torch.Tensor
    y_true: torch.Tensor = None
    ids: torch.Tensor = None
    mask = h_true = t = None  # every target observed; no hidden states, no time grid

    @property
    def args(self):
        """Positional model arguments ``(x, y)``."""
        return (self.x, self.y)

    @property
    def kwargs(self):
        return {}


@dataclass
class StaticProblem(Problem):
    """A :class:`Problem` of :class:`StaticSplit` s whose default model is an
    :class:`~pyro_node_uq.models.SDEBNN`.

    :ivar str task: ``"regression"`` or ``"classification"`` (what the comparison scores).
    :ivar int num_classes: classes of a classification problem.
    """

    task: str = "regression"
    num_classes: int = None

    def __post_init__(self):
        for name, split in self.splits.items():
            if split.x.dim() != 2 or split.x.shape[-1] != self.input_dim or split.x.shape[0] != len(split):
                raise ValueError(f"problem {self.name!r}, split {name!r}: x must be (N, {self.input_dim}), got "
                                 f"{tuple(split.x.shape)} for {len(split)} targets")

    @property
    def obs_dim(self):
        return self.num_classes if self.task == "classification" else len(self.obs_names)

    def default_model(self, **overrides):
        """The recommended SDE-BNN for this problem; keyword arguments override its configuration."""
        from ..models import SDEBNN

        kwargs = {"input_dim": self.input_dim, "output_dim": self.obs_dim, "likelihood": self.task}
        kwargs.update(self.model_kwargs)
        kwargs.update(overrides)
        return SDEBNN(**kwargs)


def _gap_target(x):
    return torch.sin(2.5 * x) + 0.3 * x ** 2


def gap_regression(seed=0, num_train=48, num_test=48, num_extrapolation=48, noise=0.08):
    """The ``gap_regression`` problem (see :data:`GAP_REGRESSION`).

    :param int seed: seed of the inputs and the noise.
    :param int num_train: training pairs (likewise ``num_test``, ``num_extrapolation``).
    :param float noise: noise std of the targets.
    :rtype: StaticProblem

    Example::

        >>> problem = gap_regression(num_train=6)
        >>> problem.train.x.shape, problem.default_model().likelihood
        (torch.Size([6, 1]), 'regression')
    """
    gen = torch.Generator().manual_seed(seed)
    u = lambda n: torch.rand(n, 1, generator=gen, dtype=torch.float64)

    def split(x):
        y_true = _gap_target(x)
        return StaticSplit(x=x, y=y_true + noise * torch.randn(x.shape, generator=gen, dtype=x.dtype), y_true=y_true)

    def seen(n):  # half on each side of the gap
        return torch.cat([u(n - n // 2) * 1.4 - 1.8, u(n // 2) * 1.2 + 0.6])

    n = num_extrapolation
    unseen = torch.cat([u(n - 2 * (n // 3)) - 0.4, u(n // 3) * 0.6 - 2.4, u(n // 3) * 0.6 + 1.8])
    return StaticProblem(
        name="gap_regression", description=GAP_REGRESSION, train=split(seen(num_train)), test=split(seen(num_test)),
        extrapolation=split(unseen), obs_names=("y",), input_names=("x",), noise_scale=noise,
        model_kwargs={"hidden_dim": 3, "width": (16,), "sigma": 0.5, "obs_scale": noise, "solver": {"method": "euler",
                                                                                       "dt": 0.1}})


def spirals(seed=0, num_train=120, num_test=120, num_extrapolation=120, flip=0.05):
    """The ``spirals`` three-class problem (see :data:`SPIRALS`).

    :param int seed: seed of the points and the label noise.
    :param int num_train: training points (likewise ``num_test``, ``num_extrapolation``).
    :param float flip: share of training and test labels resampled uniformly.
    :rtype: StaticProblem

    Example::

        >>> problem = spirals(num_train=9)
        >>> problem.train.y.dtype, problem.num_classes, problem.default_model().likelihood
        (torch.int64, 3, 'classification')
    """
    if not 0 <= flip <= 1:
        raise ValueError(f"flip: expected a share in [0, 1], got {flip}")
    gen = torch.Generator().manual_seed(seed)

    def split(n, radii, noisy):
        r = radii[0] + (radii[1] - radii[0]) * torch.rand(n, generator=gen, dtype=torch.float64)
        a = 2 * math.pi * torch.rand(n, generator=gen, dtype=torch.float64)
        y = (torch.remainder(a + 1.5 * r, 2 * math.pi) / (2 * math.pi / 3)).long().clamp(max=2)
        if noisy:
            resample = torch.rand(n, generator=gen) < flip
            y = torch.where(resample, torch.randint(3, (n,), generator=gen), y)
        return StaticSplit(x=torch.stack([r * a.cos(), r * a.sin()], -1), y=y)

    return StaticProblem(
        name="spirals", description=SPIRALS, train=split(num_train, (0.3, 2.0), True),
        test=split(num_test, (0.3, 2.0), True), extrapolation=split(num_extrapolation, (2.5, 3.5), False),
        obs_names=("class",), input_names=("x1", "x2"), task="classification", num_classes=3,
        model_kwargs={"input_layer": "linear", "hidden_dim": 8, "width": (16,), "sigma": 0.2, "solver": {"dt": 0.25}})
