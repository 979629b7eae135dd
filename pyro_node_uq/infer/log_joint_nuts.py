"""NUTS whose potential energy is the model's own log joint density, where the model offers one.

Pyro's HMC and NUTS evaluate the potential energy by running the model under a trace and a condition handler and
scoring the trace: general, and for a small model more expensive than the model's own arithmetic.  A model with a
method ``log_joint_fn(*args, **kwargs)`` returning a function ``values -> log joint`` (with an attribute ``sites``,
the latent sites it takes), or ``None`` where it cannot (as :meth:`~pyro_node_uq.models.NODEModel.log_joint_fn`
does), gets from :class:`LogJointNUTS` the potential energy::

    U(z) = -( log_joint(x) + sum over sites of log |det dx/dz| ),    x = T^{-1}(z)

with the transforms ``T`` Pyro's ``setup`` made (identities skipped), which equals Pyro's potential to rounding.
Everything else (initialisation, step-size and mass adaptation, tree building, the samples in the constrained
space) is Pyro's.  Models without the method, a ``None``, or ``jit_compile=True`` keep Pyro's potential.
"""
from pyro.infer import NUTS
from torch.distributions.transforms import IndependentTransform, identity_transform

__all__ = ["LogJointNUTS", "model_potential"]


def _is_identity(transform):
    """Whether ``transform`` (constrained -> unconstrained) is the identity, possibly over event dims."""
    forward = transform.inv
    while isinstance(forward, IndependentTransform):
        forward = forward.base_transform
    return forward == identity_transform


def model_potential(model, transforms, args=(), kwargs=None):
    """The potential energy ``z -> U(z)`` of ``model`` on the data ``(args, kwargs)`` from its ``log_joint_fn``
    (module docstring), or ``None`` when the model has none for these data or its sites are not those of
    ``transforms``.

    :param model: a Pyro model (e.g. a :class:`~pyro_node_uq.models.NODEModel`).
    :param dict transforms: site -> constrained-to-unconstrained transform (a kernel's ``transforms``).
    """
    make = getattr(model, "log_joint_fn", None)
    log_joint = make(*args, **(kwargs or {})) if callable(make) else None
    if log_joint is None or set(log_joint.sites) != set(transforms):
        return None
    moved = [(site, t) for site, t in transforms.items() if not _is_identity(t)]

    def potential(z):
        values = dict(z)
        for site, t in moved:
            values[site] = t.inv(z[site])
        out = log_joint(values)
        for site, t in moved:
            out = out - t.log_abs_det_jacobian(values[site], z[site]).sum()
        return -out

    return potential


class LogJointNUTS(NUTS):
    """Pyro's ``NUTS`` (same arguments, an ``MCMCKernel`` for ``pyro.infer.MCMC``) whose potential energy, after
    ``setup``, is :func:`model_potential` of its model when the model offers a log joint (module docstring).

    :param bool model_log_joint: use the model's log joint where it offers one (``False``: always Pyro's
        potential).  Ignored with ``jit_compile=True``, which traces Pyro's.

    :ivar bool uses_model_log_joint: whether the last ``setup`` installed the model's log joint.

    Example::

        >>> import torch
        >>> from pyro.infer import MCMC
        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=2, dtype=torch.float64)
        >>> model = problem.default_model(R_hidden=(4,))
        >>> kernel = LogJointNUTS(model, max_tree_depth=2, init_strategy=model.init_loc_fn(0))
        >>> mcmc = MCMC(kernel, num_samples=2, warmup_steps=2, disable_progbar=True)
        >>> mcmc.run(*problem.train.args)
        >>> kernel.uses_model_log_joint, mcmc.get_samples()["R.0.weight"].shape
        (True, torch.Size([2, 4, 4]))
    """

    def __init__(self, model=None, potential_fn=None, *, model_log_joint=True, **kwargs):
        super().__init__(model, potential_fn, **kwargs)
        self.model_log_joint = bool(model_log_joint) and not kwargs.get("jit_compile", False)
        self.uses_model_log_joint = False

    def setup(self, warmup_steps, *args, **kwargs):
        super().setup(warmup_steps, *args, **kwargs)
        self.uses_model_log_joint = False
        if self.model is not None and self.model_log_joint:
            potential = model_potential(self.model, self.transforms, args, kwargs)
            if potential is not None:
                self.potential_fn, self.uses_model_log_joint = potential, True
