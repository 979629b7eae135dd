"""Problems: trajectories with inputs, noisy observations, noise-free truth, true hidden states and splits."""
from dataclasses import dataclass, field, replace

import torch

from ..utils.tensors import move_tensors
from ..validation import check_trajectory_data

__all__ = ["Problem", "Rows", "Split", "random_sines"]


class Rows:
    """What every split shares: one row per trajectory or (x, y) pair in ``y``, stable ``ids``, moves."""

    def __post_init__(self):
        if self.ids is None:
            self.ids = torch.arange(self.y.shape[0], device=self.y.device)

    def __len__(self):
        return self.y.shape[0]

    def to(self, dtype=None, device=None):
        """A copy with floating tensors cast to ``dtype`` and every tensor moved to ``device`` (``None``: unchanged).

        Example::

            >>> split = Split(t=torch.linspace(0, 1, 3), x=None, y=torch.zeros(2, 3, 1))
            >>> split.to(dtype=torch.float64).y.dtype, split.to(device="cpu").ids.device
            (torch.float64, device(type='cpu'))
        """
        return replace(self, **move_tensors(dict(self.__dict__), dtype, device))


@dataclass
class Split(Rows):
    """A batch of trajectories on one time grid.

    :ivar t: observation times ``(T,)``.
    :ivar x: inputs ``(N, T, input_dim)`` or ``None``.
    :ivar y: noisy observations ``(N, T, obs_dim)`` (zeros where ``mask`` is False).
    :ivar mask: boolean ``(N, T)`` of observed points, or ``None`` (all observed).
    :ivar y_true: noise-free observations, or ``None`` for real data.
    :ivar h_true: true hidden states ``(N, T, state_dim)``, or ``None`` for real data.
    :ivar ids: stable integer id of each trajectory ``(N,)`` (subject, seed index...).
    """

    t: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor = None
    y_true: torch.Tensor = None
    h_true: torch.Tensor = None
    ids: torch.Tensor = None

    @property
    def args(self):
        """Positional model arguments ``(t, x, y)``."""
        return (self.t, self.x, self.y)

    @property
    def kwargs(self):
        """Keyword model arguments (the mask, when some points are unobserved)."""
        return {} if self.mask is None else {"mask": self.mask}



@dataclass
class Problem:
    """A benchmark problem: documented dynamics plus train / test / extrapolation splits.

    :ivar name: registry name.
    :ivar description: equations, units, parameter values and noise level.
    :ivar train, test, extrapolation: the :class:`Split` s (``extrapolation`` may be ``None``: the comparison
        then scores the test split only).
    :ivar obs_names, input_names, state_names: names of the outputs, inputs and true hidden states.
    :ivar noise_scale: the true observation noise std (``None`` for real data).
    :ivar model_kwargs: the recommended model configuration.
    :ivar model_class: name of the recommended model class in :mod:`pyro_node_uq.models`.
    """

    name: str
    description: str
    train: Split
    test: Split
    extrapolation: Split
    obs_names: tuple
    input_names: tuple = ()
    state_names: tuple = ()
    time_unit: str = ""
    noise_scale: float = None
    model_kwargs: dict = field(default_factory=dict)
    model_class: str = "NODEModel"
    task = "trajectories"  # what the comparison scores (a static problem: "regression" or "classification")

    @classmethod
    def simulated(cls, simulate, seed, sizes, t_end, num_times, in_domain, out_of_domain, noise, **fields):
        """A problem whose three splits come from one simulator, drawn in order from one seeded generator.

        :param simulate: ``simulate(n, amplitude_range, t, noise, generator) -> Split``.
        :param int seed: seed of the generator (inputs and noise).
        :param tuple sizes: trajectories of the train, test and extrapolation splits.
        :param float t_end: observation times are ``num_times`` points on ``[0, t_end]``.
        :param int num_times: number of observation times.
        :param tuple in_domain: input amplitude range of train and test.
        :param tuple out_of_domain: input amplitude range of the extrapolation split.
        :param float noise: observation noise std (also the problem's ``noise_scale``).
        :param fields: the other :class:`Problem` fields (``name``, ``description``, names, ``model_kwargs``...).
        """
        gen = torch.Generator().manual_seed(seed)
        t = torch.linspace(0.0, t_end, num_times, dtype=torch.float64)
        splits = [simulate(n, amplitude, t, noise, gen)
                  for n, amplitude in zip(sizes, (in_domain, in_domain, out_of_domain))]
        return cls(train=splits[0], test=splits[1], extrapolation=splits[2], noise_scale=noise, **fields)

    def __post_init__(self):
        for name, split in self.splits.items():
            try:
                check_trajectory_data(split.t, split.x, split.y, split.mask, len(self.input_names),
                                      len(self.obs_names))
            except (ValueError, TypeError) as e:
                raise ValueError(f"problem {self.name!r}, split {name!r}: {e}") from e

    @property
    def splits(self):
        """The splits that are present, by name (``extrapolation`` may be absent)."""
        splits = {"train": self.train, "test": self.test, "extrapolation": self.extrapolation}
        return {k: v for k, v in splits.items() if v is not None}

    @property
    def obs_dim(self):
        return len(self.obs_names)

    @property
    def input_dim(self):
        return len(self.input_names)

    def default_model(self, **overrides):
        """The recommended NODE model for this problem; keyword arguments override its configuration."""
        from .. import models

        kwargs = {"obs_dim": self.obs_dim, "input_dim": self.input_dim}
        kwargs.update(self.model_kwargs)
        kwargs.update(overrides)
        return getattr(models, self.model_class)(**kwargs)

    def to(self, dtype=None, device=None):
        """A copy with every split (and tensor model option) cast to ``dtype`` and moved to ``device``."""
        model_kwargs = {k: (v.to(device=device, dtype=dtype if v.is_floating_point() else None)
                            if torch.is_tensor(v) else v) for k, v in self.model_kwargs.items()}
        return replace(self, **{k: v.to(dtype, device) for k, v in self.splits.items()}, model_kwargs=model_kwargs)


class random_sines:
    """Smooth random signals: ``offset + amplitude * sum_j a_j sin(2 pi f_j t + phi_j)`` per trajectory.

    Evaluated analytically (with its time derivative), so ground truth is solved without interpolation error.

    :param int n: number of trajectories.
    :param amplitude: ``(low, high)`` of the per-trajectory amplitude.
    :param freqs: ``(low, high)`` of the frequencies of the ``num_terms`` components.
    """

    def __init__(self, n, amplitude, freqs, num_terms=3, offset=0.0, generator=None, dtype=torch.float64):
        u = lambda *s: torch.rand(*s, generator=generator, dtype=dtype)
        lo, hi = amplitude
        self.amp = lo + (hi - lo) * u(n, 1)
        w = u(n, num_terms) + 0.2
        self.weights = w / w.sum(-1, keepdim=True)
        self.freqs = freqs[0] + (freqs[1] - freqs[0]) * u(n, num_terms)
        self.phases = 2 * torch.pi * u(n, num_terms)
        self.offset = offset

    def __call__(self, t):
        """Signal at times ``t`` (scalar or ``(T,)``): shape ``(n,)`` or ``(n, T)``."""
        t = torch.as_tensor(t, dtype=self.amp.dtype)
        arg = 2 * torch.pi * self.freqs[..., None] * t.reshape(-1) + self.phases[..., None]
        s = self.offset + self.amp * (self.weights[..., None] * torch.sin(arg)).sum(-2)
        return s[..., 0] if t.dim() == 0 else s

    def rate(self, t):
        """Time derivative of the signal at times ``t``."""
        t = torch.as_tensor(t, dtype=self.amp.dtype)
        arg = 2 * torch.pi * self.freqs[..., None] * t.reshape(-1) + self.phases[..., None]
        d = self.amp * (self.weights[..., None] * 2 * torch.pi * self.freqs[..., None] * torch.cos(arg)).sum(-2)
        return d[..., 0] if t.dim() == 0 else d
