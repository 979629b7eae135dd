"""Device and dtype handling: every tensor the package creates follows the data or parameters it works with."""
import torch

__all__ = ["broadcast_shapes", "expanded", "move_tensors"]


def move_tensors(values, dtype=None, device=None):
    """A copy of ``values`` (a dict, tuple or list, nested) with every floating tensor moved to ``dtype`` and
    ``device`` and every other tensor to ``device``; non-tensors are kept as they are.

    Example::

        >>> out = move_tensors({"t": torch.zeros(2), "mask": torch.ones(2, dtype=torch.bool), "n": 3},
        ...                    dtype=torch.float64)
        >>> out["t"].dtype, out["mask"].dtype, out["n"]
        (torch.float64, torch.bool, 3)
    """
    if torch.is_tensor(values):
        return values.to(device=device, dtype=dtype if values.is_floating_point() else None)
    if isinstance(values, dict):
        return {k: move_tensors(v, dtype, device) for k, v in values.items()}
    if isinstance(values, tuple) and hasattr(values, "_fields"):  # a NamedTuple (a DoseSchedule...)
        return type(values)(*(move_tensors(v, dtype, device) for v in values))
    if isinstance(values, (list, tuple)):
        return type(values)(move_tensors(v, dtype, device) for v in values)
    return values


def expanded(value, shape):
    """``value.expand(shape)``, or ``value`` itself when it has that shape already (an expand that changes
    nothing still adds a node to the autograd graph, and its backward pass is not free).

    Example::

        >>> v = torch.zeros(2, 3)
        >>> expanded(v, (2, 3)) is v, expanded(v, (4, 2, 3)).shape
        (True, torch.Size([4, 2, 3]))
    """
    return value if value.shape == shape else value.expand(shape)


def broadcast_shapes(*shapes):
    """``torch.broadcast_shapes`` for the few short shapes of a model evaluation, in plain Python: about 2 us
    where torch's (written for symbolic shapes) takes about 20, and it runs several times per evaluation.

    :raises RuntimeError: like torch's, when the shapes do not broadcast.

    Example::

        >>> broadcast_shapes((1, 1), (16,), ())
        torch.Size([1, 16])
    """
    ndim = max(map(len, shapes), default=0)
    out = [1] * ndim
    for shape in shapes:
        for i, d in enumerate(shape, ndim - len(shape)):
            if d != 1:
                if out[i] != 1 and out[i] != d:
                    raise RuntimeError(f"shapes {[tuple(s) for s in shapes]} do not broadcast (dim {i - ndim})")
                out[i] = d
    return torch.Size(out)
