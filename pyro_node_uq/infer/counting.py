"""Count data-model evaluations (ODE solves x particles) of a Pyro model, as inference actually makes them."""
import copy

from pyro import poutine

__all__ = ["CountingModel"]


class CountingModel:
    """Wrap a Pyro model and count how many ensemble members its observed site was evaluated for.

    Each call adds the number of particles the observation site ``site`` was computed for: the product of the
    sizes of its vectorised plates outside the model's own data plates (``dim < -max_plate_nesting``: Pyro's
    vectorised ELBO particles, ``Predictive`` samples, SVGD particles).  A plain call (MAP, one NUTS
    potential evaluation) counts 1.  Pickles like the wrapped model.

    :param model: the Pyro model.
    :param str site: name of the observed site whose likelihood is the expensive data model.
    :param int max_plate_nesting: plates at ``dim >= -max_plate_nesting`` belong to the model.

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> def model():
        ...     with pyro.plate("trajectories", 3):
        ...         pyro.sample("obs", dist.Normal(0., 1.), obs=torch.zeros(3))
        >>> counted = CountingModel(model)
        >>> with pyro.plate("particles", 8, dim=-2):
        ...     counted()
        >>> counted.count
        8
    """

    def __init__(self, model, site="obs", max_plate_nesting=1):
        self.model, self.site, self.max_plate_nesting = model, site, max_plate_nesting
        self._counter = [0]  # shared with the views of :meth:`with_divergence`

    @property
    def count(self):
        """Ensemble members evaluated so far (by this model and its :meth:`with_divergence` views)."""
        return self._counter[0]

    @count.setter
    def count(self, value):
        self._counter[0] = value

    def with_divergence(self, mode):
        """A view of the wrapped model with ``on_divergence=mode`` whose evaluations count here too (the wrapped
        model must provide ``with_divergence``, as every :class:`~pyro_node_uq.models.ProcessModel` does)."""
        view = copy.copy(self)
        view.model = self.model.with_divergence(mode)
        return view

    def __call__(self, *args, **kwargs):
        with poutine.trace() as tracer:
            out = self.model(*args, **kwargs)
        node = tracer.trace.nodes.get(self.site)
        if node is not None:
            n = 1
            for frame in node["cond_indep_stack"]:
                if frame.vectorized and frame.dim is not None and frame.dim < -self.max_plate_nesting:
                    n *= frame.size
            # a call under poutine.block (a guide's exact drift) hides the particle plates: count the batch too
            batch = node["fn"].batch_shape
            self.count += max(n, batch[: max(len(batch) - self.max_plate_nesting, 0)].numel())
        return out

    def __getattr__(self, name):  # expose the wrapped model's helpers (init_loc_fn, layer_sites, ...)
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)
