"""Checks of user data with errors that name the argument and say what was expected."""
import torch

__all__ = ["check_times", "check_trajectory_data"]


def check_times(t, name="t"):
    """``t`` must be a finite, strictly increasing 1-D tensor."""
    if not torch.is_tensor(t):
        raise TypeError(f"{name}: expected a torch.Tensor of times, got {type(t).__name__}")
    if t.dim() != 1 or t.numel() < 1:
        raise ValueError(f"{name}: expected a non-empty 1-D tensor of times, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name}: times contain NaN or inf")
    if t.numel() > 1:
        dt = t[1:] - t[:-1]
        if (dt <= 0).any():
            i = int(torch.nonzero(dt <= 0)[0])
            what = "duplicated" if dt[i] == 0 else "unsorted"
            raise ValueError(f"{name}: times must be strictly increasing; {what} at index {i + 1} "
                             f"({float(t[i])} then {float(t[i + 1])})")


def check_trajectory_data(t, x, y, mask, input_dim, obs_dim, x_times=None):
    """Validate a batch of trajectories for a NODE model and return ``(y_filled, mask)``.

    :param t: observation times ``(T,)``.
    :param x: inputs ``(N, Tx, input_dim)`` at ``x_times`` (default ``t``), or ``None`` when ``input_dim == 0``.
    :param y: observations ``(N, T, obs_dim)`` or ``None``; NaN is allowed only where ``mask`` is False.
    :param mask: boolean ``(N, T)`` or ``(N, T, obs_dim)``, or ``None``.
    :returns: ``y`` with masked-out NaNs replaced by 0, and the mask expanded to ``(N, T, obs_dim)`` or ``None``.
    """
    check_times(t, "t")
    T = t.shape[0]
    N = None
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
