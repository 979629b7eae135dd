"""Seeds and param stores: the few lines every method needs to be reproducible and to keep its own parameters."""
import contextlib

import pyro
import torch

__all__ = ["param_scope", "seeded_generator"]


@contextlib.contextmanager
def param_scope(state):
    """Temporarily replace Pyro's global param store by ``state`` (from ``get_param_store().get_state()``).

    Fitted methods keep their ``pyro.param`` values (autoguide parameters, a learned noise scale) in their own
    state, so several methods fitted one after another do not overwrite each other.  ``None`` leaves the store as
    it is.

    :param dict state: a param store state, or ``None``.

    Example::

        >>> import pyro, torch
        >>> pyro.clear_param_store()
        >>> _ = pyro.param("a", torch.tensor(1.0))
        >>> saved = pyro.get_param_store().get_state()
        >>> _ = pyro.param("b", torch.tensor(2.0))
        >>> with param_scope(saved):
        ...     sorted(pyro.get_param_store().keys())
        ['a']
        >>> sorted(pyro.get_param_store().keys())
        ['a', 'b']
    """
    store = pyro.get_param_store()
    if state is None:
        yield
        return
    saved = store.get_state()
    store.clear()
    store.set_state(state)
    try:
        yield
    finally:
        store.clear()
        store.set_state(saved)


def seeded_generator(seed, device=None):
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (``None``: the CPU).

    Draws that must be the same on every device (initial weights) use a CPU generator and move the result;
    draws that stay on an accelerator use a generator there (a CUDA tensor cannot be drawn from a CPU generator).

    :param int seed: the seed.
    :param device: the generator's device.

    Example::

        >>> a = torch.randn(2, generator=seeded_generator(0))
        >>> bool((a == torch.randn(2, generator=seeded_generator(0))).all())
        True
    """
    return torch.Generator(device=device if device is not None else "cpu").manual_seed(int(seed))
