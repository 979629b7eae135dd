"""One validation layer for user data and algorithm options: errors name the argument, what was expected and
what was found.

Data (:func:`check_tensor`, :func:`check_trajectory_data`): a float32 or float64 tensor (float16/bfloat16 lose
the solver's precision; integer data is refused, not silently promoted), one dtype and one device for ``t``,
``x`` and ``y``, finite values, magnitudes a NODE can fit (:data:`MAX_MAGNITUDE`), at least one trajectory.
Options (:func:`check_int`, :func:`check_positive`): counts are integers with a lower bound, rates and scales
positive finite floats (``inf``, ``nan``, ``0`` and negatives are refused by name).
"""
import math
import numbers
import warnings

import torch

__all__ = [
    "MAX_MAGNITUDE",
    "MAX_SIZE",
    "DataScaleWarning",
    "OnDivergence",
    "check_choice",
    "check_device",
    "check_int",
    "check_positive",
    "check_tensor",
    "check_times",
    "check_trajectory_data",
    "check_widths",
]

#: data larger than this in absolute value is refused: float32 squares overflow near 1e19, and a NODE with
#: unit-scale weights cannot reach it (standardise the data instead)
MAX_MAGNITUDE = 1e12
#: data above this in absolute value draws a :class:`DataScaleWarning` (the networks expect order-one data)
LARGE_MAGNITUDE = 1e4
_FLOATS = (torch.float32, torch.float64)


class DataScaleWarning(UserWarning):
    """Data far from order one: a NODE with unit-scale weight priors fits standardised data much better."""


#: the largest size (a width, a count of bins...) accepted by the option checks: beyond it a typo, not a model
MAX_SIZE = 10 ** 7


class OnDivergence(str):
    """What a diverging solve does, checked once: ``"raise"`` a
    :class:`~pyro_node_uq.distributions.NODEDivergenceError`, or ``"reject"`` (the diverged members score
    ``-inf``).  A ``str`` (it compares, prints and pickles as its value); the public constructors turn their
    ``on_divergence`` into one and the layers below take it as checked (``OnDivergence(v)`` of an instance is
    ``v`` itself).

    Example::

        >>> OnDivergence("reject") == "reject"
        True
        >>> OnDivergence("ignore")
        Traceback (most recent call last):
        ...
        ValueError: on_divergence: expected 'raise' or 'reject', got 'ignore'
    """

    __slots__ = ()

    def __new__(cls, value):
        if isinstance(value, cls):
            return value
        if not isinstance(value, str) or value not in ("raise", "reject"):
            raise ValueError(f"on_divergence: expected 'raise' or 'reject', got {value!r}")
        return super().__new__(cls, value)


def check_int(value, name, minimum=None, maximum=None):
    """``value`` as an ``int``; it must be an integer (not a bool, not a string) in ``[minimum, maximum]``
    (a float is accepted only when it is a whole number below ``2**31``).

    Example::

        >>> check_int(3, "num_steps", minimum=1)
        3
        >>> check_int("abc", "num_steps", minimum=1)
        Traceback (most recent call last):
        ...
        TypeError: num_steps: expected an integer >= 1, got 'abc' (str)
    """
    bound = "" if minimum is None else f" >= {minimum}"
    bound += "" if maximum is None else f"{' and' if bound else ''} <= {maximum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 31:
            value = int(value)
        else:
            raise TypeError(f"{name}: expected an integer{bound}, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        raise ValueError(f"{name}: expected an integer{bound}, got {value}")
    return int(value)


def check_choice(value, name, choices):
    """``value`` must be one of ``choices`` (compared as given; a non-string never matches a string choice)."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {sorted(choices)}, got {value!r}")
    return value


def check_widths(value, name):
    """A sequence of positive integer layer widths, as a tuple (``()`` allowed)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name}: expected a tuple of positive integer widths, e.g. (32,), got {value!r}")
    return tuple(check_int(w, f"{name}[{i}]", 1, MAX_SIZE) for i, w in enumerate(value))


def check_positive(value, name, allow_zero=False):
    """``value`` as a ``float``; it must be a finite number ``> 0`` (``>= 0`` with ``allow_zero``).

    Example::

        >>> check_positive(-0.1, "lr")
        Traceback (most recent call last):
        ...
        ValueError: lr: expected a finite number > 0, got -0.1
    """
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a finite number {bound}, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name}: expected a finite number {bound}, got {value}")
    return value


def check_tensor(value, name, dtype=None, device=None, finite=True):
    """A floating data tensor: float32/float64 (``dtype`` when given), on ``device``, finite, not huge.

    :param dtype: the dtype it must have (e.g. that of ``t``); ``None``: float32 or float64.
    :param device: the device it must be on; ``None``: any.
    :param bool finite: refuse NaN and inf (pass ``False`` when a mask may hide NaNs; then check them later).
    """
    if not torch.is_tensor(value):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in _FLOATS:
        hint = " (convert with .double() or .float())" if not value.is_floating_point() else \
            " (half precision is too coarse for ODE solves; use float32 or float64)"
        raise TypeError(f"{name}: expected a float32 or float64 tensor, got {value.dtype}{hint}")
    if dtype is not None and value.dtype != dtype:
        raise TypeError(f"{name}: dtype {value.dtype} differs from t's {dtype}; give t, x and y one dtype")
    if device is not None and value.device != device:
        raise ValueError(f"{name}: on device {value.device} but t is on {device}; move them to one device")
    if finite and not torch.isfinite(value).all():
        raise ValueError(f"{name}: contains NaN or inf")
    _check_magnitude(value, name)
    return value


def _check_magnitude(value, name):
    big = value.detach().abs().nan_to_num(0.0, 0.0, 0.0)
    peak = float(big.max()) if big.numel() else 0.0
    if peak > MAX_MAGNITUDE:
        raise ValueError(f"{name}: values up to {peak:.3g}, above {MAX_MAGNITUDE:g}; a NODE cannot fit data of this "
                         "scale: standardise it (subtract the mean, divide by the standard deviation)")
    if peak > LARGE_MAGNITUDE:
        warnings.warn(f"{name}: values up to {peak:.3g}; the networks expect data of order one, so standardise it "
                      "for a better fit", DataScaleWarning, stacklevel=4)


def check_times(t, name="t", t_mask=None):
    """``t`` must be finite and strictly increasing: a non-empty 1-D tensor ``(T,)``, or per-unit times ``(N, T)``
    whose real entries (``t_mask``, default all) are finite and strictly increasing along each row (the padding
    in between is ignored).  The one check of sorted times: the data check and the solve's call it.

    Example::

        >>> check_times(torch.tensor([0.0, 1.0, 1.0]))
        Traceback (most recent call last):
        ...
        ValueError: t: times must be strictly increasing; duplicated at index 2 (1.0 then 1.0)
    """
    if not torch.is_tensor(t):
        raise TypeError(f"{name}: expected a torch.Tensor of times, got {type(t).__name__}")
    if t.dim() == 2:
        return _check_unit_times(t, name, t_mask)
    if t.dim() != 1 or t.numel() < 1:
        raise ValueError(f"{name}: expected a non-empty 1-D tensor of times, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name}: times contain NaN or inf")
    if t.numel() > 1:
        dt = t[1:] - t[:-1]
        if (dt <= 0).any():
            i = int(torch.nonzero(dt <= 0)[0])
            raise ValueError(_unsorted(name, "", i + 1, t[i], t[i + 1]))


def _unsorted(name, where, i, before, after):
    what = "duplicated" if before == after else "unsorted"
    return (f"{name}: times must be strictly increasing; {what} at {where}index {i} "
            f"({float(before)} then {float(after)})")


def _check_unit_times(t, name, t_mask):
    """Per-unit times ``(N, T)``: each row's real entries (``t_mask``) finite and strictly increasing."""
    mask = torch.ones(t.shape, dtype=torch.bool, device=t.device) if t_mask is None else t_mask
    if not torch.isfinite(t[mask]).all():
        raise ValueError(f"{name}: times contain NaN or inf (pad per-unit times with t_mask)")
    pos = torch.where(mask, torch.arange(t.shape[-1], device=t.device), -1).cummax(-1).values
    prev = torch.cat([pos.new_full(pos.shape[:-1] + (1,), -1), pos[:, :-1]], -1)  # previous real time's index
    before = t.gather(-1, prev.clamp(min=0))
    bad = mask & (prev >= 0) & (t <= before)
    if bad.any():
        unit, i = (int(v) for v in torch.nonzero(bad)[0])
        raise ValueError(_unsorted(name, f"unit {unit}, ", i, before[unit, i], t[unit, i]))


def check_trajectory_data(t, x, y, mask, input_dim, obs_dim, x_times=None):
    """Validate a batch of trajectories for a NODE model and return ``(y_filled, mask)``.

    :param t: observation times ``(T,)``, or ``(N, T)`` per trajectory (padded; sorted where real, checked by
        the solve).
    :param x: inputs ``(N, Tx, input_dim)`` at ``x_times`` (default ``t``), or ``None`` when ``input_dim == 0``.
    :param y: observations ``(N, T, obs_dim)`` or ``None``; NaN is allowed only where ``mask`` is False.
    :param mask: boolean ``(N, T)`` or ``(N, T, obs_dim)``, or ``None``.
    :returns: ``y`` with masked-out NaNs replaced by 0, and the mask expanded to ``(N, T, obs_dim)`` or ``None``.
    """
    if torch.is_tensor(t) and t.dim() == 2:
        check_tensor(t, "t", finite=False)
    else:
        check_times(t, "t")
        check_tensor(t, "t")
    for arg, value in (("x", x), ("y", y), ("x_times", x_times)):
        if value is not None:
            check_tensor(value, arg, dtype=t.dtype, device=t.device, finite=arg != "y")
    if mask is not None and torch.is_tensor(mask) and mask.device != t.device:
        raise ValueError(f"mask: on device {mask.device} but t is on {t.device}; move them to one device")
    for arg, value in (("x", x), ("y", y), ("mask", mask)):
        if value is not None and value.dim() >= 1 and value.shape[0] == 0:
            raise ValueError(f"{arg}: no trajectories (N=0); give at least one trajectory")
    T = t.shape[-1]
    N = t.shape[0] if t.dim() == 2 else None
    if input_dim > 0:
        if x is None:
            raise ValueError(f"x: the model expects inputs with input_dim={input_dim}, got x=None")
        if x_times is not None:
            check_times(x_times, "x_times")
        Tx = T if x_times is None else x_times.shape[0]
        if x.dim() != 3 or x.shape[-2:] != (Tx, input_dim):
            raise ValueError(f"x: expected shape (N, {Tx}, {input_dim}) (trajectories, times, inputs), "
                             f"got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("x: inputs contain NaN or inf")
        if N is not None and x.shape[0] != N:
            raise ValueError(f"x: {x.shape[0]} trajectories but the per-trajectory times t have {N}")
        N = x.shape[0]
    elif x is not None and x.numel() > 0:
        raise ValueError(f"x: the model has input_dim=0 but x has shape {tuple(x.shape)}")
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask: expected a bool tensor, got dtype {mask.dtype}")
        if mask.dim() == 2:
            mask = mask[..., None].expand(mask.shape + (obs_dim,))
        if mask.dim() != 3 or mask.shape[-2:] != (T, obs_dim):
            raise ValueError(f"mask: expected shape (N, {T}) or (N, {T}, {obs_dim}), got {tuple(mask.shape)}")
        if N is not None and mask.shape[0] != N:
            raise ValueError(f"mask: {mask.shape[0]} trajectories but x has {N}")
    if y is not None:
        if y.dim() != 3 or y.shape[-2:] != (T, obs_dim):
            raise ValueError(f"y: expected shape (N, {T}, {obs_dim}) (trajectories, len(t), outputs), "
                             f"got {tuple(y.shape)}")
        if N is not None and y.shape[0] != N:
            raise ValueError(f"y: {y.shape[0]} trajectories but x has {N}")
        bad = ~torch.isfinite(y)
        if mask is not None:
            bad = bad & mask
        if bad.any():
            i = tuple(int(v) for v in torch.nonzero(bad)[0])
            raise ValueError(f"y: observations contain NaN or inf at index {i}; mask them out with mask=")
        if mask is not None:
            y = torch.where(mask, y, torch.zeros_like(y))
    return y, mask


def check_device(value, name="device"):
    """``value`` as a usable :class:`torch.device`: a known device type whose back-end is present on this machine
    (``"cuda"`` needs CUDA and a GPU of that index, ``"mps"`` Apple's Metal), so a fit does not fail deep inside.

    Example::

        >>> check_device("cpu")
        device(type='cpu')
        >>> check_device("gpu")
        Traceback (most recent call last):
        ...
        ValueError: device: 'gpu' is not a torch device; expected e.g. 'cpu', 'cuda', 'cuda:1' or 'mps'
    """
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{name}: {value!r} is not a torch device; expected e.g. 'cpu', 'cuda', 'cuda:1' or "
                         "'mps'") from None
    kind = device.type
    if kind == "cpu":
        return device
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{name}: {value!r} needs CUDA, which is not available on this machine (this torch "
                             f"build: {torch.__version__}, CUDA {torch.version.cuda}); use 'cpu'")
        if device.index is not None and device.index >= count:
            raise ValueError(f"{name}: {value!r} asks for GPU {device.index}, but this machine has {count} "
                             f"(cuda:0 to cuda:{count - 1})")
        return device
    backend = getattr(torch.backends, kind, None) if kind == "mps" else getattr(torch, kind, None)
    available = getattr(backend, "is_available", None)
    if kind not in ("mps", "xpu") or available is None or not available():
        raise ValueError(f"{name}: {value!r}: the {kind} back-end is not available on this machine (or not "
                         "supported); use 'cpu' or 'cuda'")
    return device
