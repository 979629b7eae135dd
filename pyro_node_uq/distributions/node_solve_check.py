"""The contract of :func:`~pyro_node_uq.distributions.node_solve.solve_node`: shapes, dtypes, sorted finite times.

Every error names the argument and says what was expected, so a bad call fails here, before a solve, instead of
inside ``torchdiffeq`` or a batched matrix product.
"""
import torch

from ..utils.tensors import broadcast_shapes
from ..validation import check_times
from . import solve_cache
from .doses import DoseSchedule

__all__ = ["check_float_dtype", "check_precision", "check_solve_args"]


def _check_times(t, t_mask):
    if not torch.is_tensor(t) or not t.is_floating_point():
        raise TypeError(f"t: expected a float tensor of times, got {getattr(t, 'dtype', type(t).__name__)}")
    if t.dim() not in (1, 2) or t.shape[-1] < 1:
        raise ValueError(f"t: expected times (T,) shared by every unit or (N, T) per unit, got shape {tuple(t.shape)}")
    if t_mask is None:
        t_mask = torch.ones(t.shape, dtype=torch.bool, device=t.device)
    elif t.dim() != 2:
        raise ValueError("t_mask: only per-unit times t of shape (N, T) are padded; shared times take no t_mask")
    elif not torch.is_tensor(t_mask) or t_mask.dtype != torch.bool or t_mask.shape != t.shape:
        raise ValueError(f"t_mask: expected a bool tensor of t's shape {tuple(t.shape)}, got "
                         f"{getattr(t_mask, 'dtype', type(t_mask).__name__)} {tuple(getattr(t_mask, 'shape', ()))}")
    if t.dim() == 1:  # finite and sorted, once per times tensor
        solve_cache.CACHE.check_once(t, "t", check_times)
    else:  # finite and sorted where real
        check_times(t, "t", t_mask)
    return t_mask


def _finite_inputs(x):
    if not torch.isfinite(x).all():
        raise ValueError("x: inputs contain NaN or inf")


def _finite_state(h0):
    if not torch.isfinite(h0).all():
        raise ValueError("h0: the initial state contains NaN or inf")


def _check_params(R, Z, params):
    batch = []
    for net in (R, Z):
        for site, shape in (net.param_shapes().items() if net is not None else ()):
            if site not in params:
                raise ValueError(f"params: missing parameter {site!r} of network {net.name!r}")
            value = params[site]
            if value.shape[value.dim() - len(shape):] != shape:
                raise ValueError(f"params: {site!r} must end in shape {tuple(shape)}, got {tuple(value.shape)}")
            batch.append(value.shape[: value.dim() - len(shape)])
    return batch


def check_solve_args(R, Z, params, t, x, x_times, h0, t_mask, doses, t0, obs_dim):
    """Validate :func:`solve_node`'s arguments; returns ``(batch_shape, t_mask, obs_dim)``.

    :returns: the ensemble batch shape (weights' batch dims x units), the per-unit time mask (all True for
        shared times) and the number of observed outputs.
    """
    H = R.sizes[-1]
    D = R.sizes[0] - H
    obs_dim = Z.sizes[-1] if Z is not None else obs_dim
    if obs_dim is None or not 0 < obs_dim <= H:
        raise ValueError(f"obs_dim: with Z=None it must be in [1, hidden_dim={H}], got {obs_dim}")
    if Z is not None and Z.sizes[0] != R.sizes[0]:
        raise ValueError(f"Z: expects {Z.sizes[0]} inputs, but hidden_dim + input_dim = {R.sizes[0]}")
    t_mask = _check_times(t, t_mask)
    batch = _check_params(R, Z, params)
    check_precision(t, params, x, h0)
    if t.dim() == 2:
        batch.append(t.shape[:1])
    if D > 0:
        if x is None:
            raise ValueError(f"x: R expects {D} inputs, got x=None")
        if x_times is None and t.dim() == 2:
            raise ValueError("x_times: with per-unit times t (N, T), the inputs x need their own sample times")
        xt = t if x_times is None else x_times
        if xt.dim() != 1:
            raise ValueError(f"x_times: expected shared sample times (Tx,), got shape {tuple(xt.shape)}")
        if x.dim() < 2 or x.shape[-2:] != (xt.shape[0], D):
            raise ValueError(f"x: expected shape (..., {xt.shape[0]}, {D}) (units, sample times, inputs), "
                             f"got {tuple(x.shape)}")
        solve_cache.CACHE.check_once(x, "x", _finite_inputs)
        batch.append(x.shape[:-2])
    if h0 is not None:
        if h0.dim() < 1 or h0.shape[-1] != H:
            raise ValueError(f"h0: expected a last dim of hidden_dim={H}, got shape {tuple(h0.shape)}")
        solve_cache.CACHE.check_once(h0, "h0", _finite_state)
        batch.append(h0.shape[:-1])
    if doses is not None:
        if not isinstance(doses, DoseSchedule):
            raise TypeError(f"doses: expected a DoseSchedule, got {type(doses).__name__}")
        doses.check(hidden_dim=H, modelled=False)
        if doses.time.dtype != t.dtype:
            raise TypeError(f"doses: dtype {doses.time.dtype} differs from t's {t.dtype}")
        batch.append(doses.time.shape[:1])
    try:
        batch_shape = broadcast_shapes(*batch)
    except RuntimeError as e:
        raise ValueError(f"units: the batch dims of params, t, x, h0 and doses do not broadcast "
                         f"({[tuple(b) for b in batch]}); units are the last batch dim") from e
    first = t[t_mask].min() if t0 is not None and t_mask.any() else None
    if first is not None and float(t0) > float(first):
        raise ValueError(f"t0: the solve starts at {float(t0)}, after the first observation time {float(first)}")
    if t0 is not None and doses is not None and doses.mask.any() and float(doses.time[doses.mask].min()) < float(t0):
        raise ValueError(f"doses: a dose at {float(doses.time[doses.mask].min())} precedes the start t0={float(t0)}")
    return batch_shape, t_mask, obs_dim


def check_float_dtype(value, name):
    """``value`` unchanged when it is a float32 or float64 tensor (or not a tensor); half precision and
    bfloat16 are refused: an ODE solve in them loses the trajectory (a mean off by whole percent)."""
    if torch.is_tensor(value) and value.is_floating_point() and value.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name}: dtype {value.dtype} is too coarse for an ODE solve and its likelihood; use "
                        "float32 or float64 (.float() or .double())")
    return value


def check_precision(t, params, x=None, h0=None):
    """Times, weights, inputs and initial state in one float32 or float64 dtype, so the solve never mixes
    precisions: a guide or model fitted in one precision and given data in the other is named here, not inside
    the compiled solver loop."""
    check_float_dtype(t, "t")
    for name, value in [("x", x), ("h0", h0)]:
        check_float_dtype(value, name)
        if torch.is_tensor(value) and value.is_floating_point() and value.dtype != t.dtype:
            raise TypeError(f"{name}: dtype {value.dtype} differs from t's {t.dtype}; give t, x and h0 one dtype")
    for name, value in params.items():
        check_float_dtype(value, f"params[{name!r}]")
        if torch.is_tensor(value) and value.is_floating_point() and value.dtype != t.dtype:
            raise TypeError(f"params[{name!r}]: dtype {value.dtype}, but the data (t) are {t.dtype}: weights fitted in "
                            f"{value.dtype} need data in {value.dtype}; cast the data, e.g. "
                            f"split.to(dtype={value.dtype}) (MethodResult.predict and to_inference_data cast it)")
