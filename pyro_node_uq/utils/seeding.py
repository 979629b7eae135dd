"""Param stores: each fitted method keeps its own ``pyro.param`` values and predicts with them."""
import contextlib

import pyro

__all__ = ["param_scope"]


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

