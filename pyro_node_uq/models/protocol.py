"""The model protocol: what every model of the package provides to the methods, the ArviZ converter and the
comparison job.

A :class:`ProcessModel` is a Pyro model (a callable running ``pyro.sample`` statements) that also says, in one
place, what the rest of the package would otherwise guess with ``hasattr``: how to call it on a data split for
fitting and for prediction, which sites it records for predictions, how deep its data plates go, which sites
form a layer, how its parameters start, what its observation noise is, and what a diverging solve does.

Every model honours a subsampled data plate (Pyro's idiom ``with pyro.plate(name, N) as idx`` with data indexed
by ``idx``): under ``subsample_size`` / ``subsample`` or a data-parallel shard it scores exactly the plate's units,
scaled by the plate to the full data.  NODE models with per-unit structure extend the one NODE body,
:class:`~pyro_node_uq.models.NODEModel`, through its component hooks (see its docstring), not with a body of
their own.
"""
import copy

from pyro.infer.autoguide import init_to_median

from ..validation import OnDivergence

__all__ = ["PlainModel", "ProcessModel"]


class ProcessModel:
    """Base class of the package's models (:class:`~pyro_node_uq.models.NODEModel`,
    :class:`~pyro_node_uq.models.SDEBNN`); subclasses implement ``__call__`` and override what differs.

    :cvar str obs_site: the observed sample site.
    :cvar str data_plate: the name of the model's data plate (one unit per trajectory or data point): the plate a
        data-parallel or minibatch fit shards and subsamples.
    :cvar int max_plate_nesting: how many plate dims the model's own plates use (ELBO particles, ``Predictive``
        and MCMC chains go to the left of them).
    :cvar dict predict_sites: site -> number of trailing dims it keeps per draw in
        :meth:`~pyro_node_uq.methods.MethodResult.predict` (``obs`` and the recorded deterministic sites).
    :cvar bool observes_hidden: the first outputs ARE the first hidden components (no observation network), so
        hidden states can be scored against a simulator's truth.
    :cvar str on_divergence: ``"raise"`` (a diverging solve is an error) or ``"reject"`` (``-inf`` log-density for
        the diverged members, what MCMC wants).
    :cvar tuple obs_dims: names of the observation site's dims per draw (ArviZ dims and how scores read it).
    :cvar bool latent_on_inputs: the latent sites are functions of the inputs (an SDE-BNN's terminal features of
        each input), so posterior draws for a split are made on that split's inputs (never its observations).
    :cvar own_guide: the guide the model brings for latent sites that have no density at arbitrary values (an
        SDE-BNN's path law), or ``None`` when autoguides, MCMC and particle methods apply.

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> class Line(ProcessModel):
        ...     predict_sites = {"obs": 1}
        ...     def __call__(self, t, x=None, y=None, num_trajectories=None):
        ...         a = pyro.sample("a", dist.Normal(0.0, 1.0))
        ...         with pyro.plate("trajectories", num_trajectories or y.shape[0], dim=-1):
        ...             return pyro.sample("obs", dist.Normal(a * t, 0.1).to_event(1), obs=y)
        >>> Line().with_divergence("reject").on_divergence
        'reject'
    """

    obs_site = "obs"
    data_plate = "trajectories"
    max_plate_nesting = 1
    predict_sites = {"obs": 3}  # noqa: RUF012
    observes_hidden = False
    on_divergence = OnDivergence("raise")
    obs_dims = ("trajectory", "time", "output")
    latent_on_inputs = False
    own_guide = None

    def fit_args(self, split):
        """``(args, kwargs)`` that condition the model on ``split``'s observations."""
        return split.args, split.kwargs

    def predict_args(self, split):
        """``(args, kwargs)`` that run the model on ``split``'s inputs with the observations left free."""
        return (split.t, split.x, None), {"num_trajectories": len(split)}

    def warm_start_values(self, values, split):
        """Point values ``site -> tensor`` of a fit of this model on ``split``, moved to where the next fit should
        start from them (default: unchanged).  A model whose likelihood has an exact symmetry can move the values
        along it to where the prior is highest, so that the next fit does not have to travel a flat ridge.

        :param dict values: constrained values of the latent sites.
        :param split: the split the fit was made on.
        """
        return values

    def init_loc_fn(self, seed=0):
        """An ``init_loc_fn`` for autoguides and MCMC starts (default: Pyro's ``init_to_median``).

        :param int seed: seed of a random initialisation (ignored by the default).
        """
        return init_to_median

    def layer_sites(self, subset):
        """Latent sites forming ``subset`` of the model's layers (for layer-wise guides).

        :param str subset: a subset name the model knows (``"last_layer"``, ``"first_layer"``...).
        """
        raise ValueError(f"layer_sites: {type(self).__name__} names no layers (subset {subset!r}); give the "
                         "stochastic sites explicitly")

    def noise_scale(self, param_state=None, prediction=None):
        """The observation noise standard deviation the model used, for scoring predictions.

        :param dict param_state: the fitted param store state (a learned scale lives there).
        :param dict prediction: a :meth:`~pyro_node_uq.methods.MethodResult.predict` output (a latent scale is
            drawn per predictive draw).
        :returns: a float, a tensor broadcastable against the predictions, or ``None`` when not known.
        """
        return

    def with_divergence(self, mode):
        """A shallow copy whose diverging solves ``"raise"`` or are ``"reject"``-ed.

        :param str mode: ``"raise"`` or ``"reject"``.
        """
        out = copy.copy(self)
        out.on_divergence = OnDivergence(mode)
        return out


class PlainModel(ProcessModel):
    """A plain Pyro model (a function) seen through the protocol's defaults (see
    :func:`~pyro_node_uq.methods.as_process_model`).

    :param model: the Pyro model, called as ``model(*split.args, **split.kwargs)``.
    :param int max_plate_nesting: the depth of its plates.
    """

    def __init__(self, model, max_plate_nesting):
        self.model, self.max_plate_nesting = model, max_plate_nesting

    def __call__(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def __repr__(self):
        return f"PlainModel({self.model!r})"

