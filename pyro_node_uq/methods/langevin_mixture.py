"""The multi-basin Langevin guide as a method: :class:`~pyro_node_uq.infer.AutoLangevinMixture` with one component
started at each member of a deep ensemble (MAP fits from independent seeds, which land in different basins)."""
import torch

from ..infer._pyro_compat import pyro_name, setup_prototype
from ..infer.autoguide import AutoLangevinMixture
from .common import as_process_model, fit_guide, init_loc, own_params, start_from
from .laplace_start import loc_in_units, site_widths
from .registry import register

__all__ = ["run_langevin_mixture"]


def _member_values(ensemble):
    """The constrained point values ``site -> tensor`` of every member of a deep ensemble's result (its samples are
    ``(members, 1, ...)``), as a list."""
    first = next(iter(ensemble.samples.values()))
    return [{k: v[i, 0] for k, v in ensemble.samples.items()} for i in range(first.shape[0])]


def _own_noise(model, ensemble, members):
    """The model in which every component samples its own noise scale, and ``members`` with each member's scales.

    A learned scale (a ``pyro.param``) is shared by all the particles of one ELBO step, so one value would serve
    every component: its ELBO optimum is the mean squared residual over all of them, too wide for the components in
    good basins and too narrow for the others.  As a latent site (:meth:`~pyro_node_uq.models.NODEModel.
    with_latent_noise`) each component's mean starts at its member's own learned value (the deep ensemble's
    :attr:`~pyro_node_uq.methods.MethodResult.draw_params`, else its shared value) and the guide carries it with
    the weights; its ``HalfNormal`` prior is ten times the largest member's value wide, so it is weak."""
    names = getattr(model, "learned_scales", ())
    if not names:
        return model, members
    shared = own_params(model, ensemble.param_state)
    per_member = {}
    for name in names:
        drawn = (ensemble.draw_params or {}).get(name)
        if drawn is not None:  # (members, 1) + shape
            per_member[name] = drawn.reshape((len(members),) + drawn.shape[2:])
        elif name in shared:
            per_member[name] = shared[name].expand((len(members),) + shared[name].shape[-1:])
    if not per_member:  # no fitted value to start from: the components share the model's learned scale
        return model, members
    latent = model.with_latent_noise({n: 10 * float(v.max()) for n, v in per_member.items()})
    return latent, [dict(m, **{n: v[i] for n, v in per_member.items()}) for i, m in enumerate(members)]


@register("langevin_mixture", "AutoLangevin with a mixture reference, one component per deep-ensemble member "
          "(path-KL ELBO)", start="ensemble", scaled=("num_iters",),
          defaults={"num_iters": 300, "num_particles": 40, "num_steps": 10, "init_scale": 3e-4},
          quick={"num_iters": 60, "num_particles": 4, "elbo_particles": 16})
def run_langevin_mixture(model, split, *, warm_start=None, num_members=None, num_iters=300, num_particles=40,
                         num_steps=10, init_scale=3e-4, lr=5e-3, seed=0, progress_bar=True, elbo_particles=64,
                         own_noise=True, laplace=False, svi_kwargs=None, **guide_kwargs):
    """AutoLangevinMixture with component ``j`` started at member ``j`` of a deep ensemble, std ``init_scale``.

    A deep ensemble's members are MAP fits in different basins of the posterior; its predictive spread over them
    is what a single-basin guide misses, and what it lacks is the spread within each basin.  The guide keeps both:
    each component's reference mean starts at its member (a MAP point, whose predictions the fit keeps: the means
    move in units of the reference's std, :meth:`~pyro_node_uq.infer.AutoLangevin.warm_start_lr_scales`), and
    the shared score net and each component's covariance are learned with the path-KL ELBO.

    Where the model learns its noise scale, each component samples its own (``own_noise``): the members' learned
    scales differ (each fits its basin's residuals), and one shared value would widen the predictive of the
    components in good basins.  The result's model is then the model with those scales latent
    (:meth:`~pyro_node_uq.models.NODEModel.with_latent_noise`), so every predictive draw carries its own scale.

    :param model: a :class:`~pyro_node_uq.models.ProcessModel` or a plain Pyro model.
    :param split: the training split.
    :param MethodResult warm_start: a :func:`~pyro_node_uq.methods.run_ensemble` fit (fitted here with
        ``num_members`` members when ``None``); its cost is included in the result's.
    :param int num_members: members of the ensemble fitted here (default: :func:`run_ensemble`'s).
    :param int num_iters: SVI iterations.
    :param int num_particles: vectorised ELBO particles per iteration, spread evenly over the components.
    :param int num_steps: chain length K.
    :param float init_scale: initial std of every component.  Small: a polished MAP point's basin is narrow, and the
        path-KL ELBO favours more spread within it than predicts best (at 3e-3, on three shipped and four simulated
        problems, the components' predictive spread at the training inputs grew above the noise level, and the
        mixture's test NLL ended 0.02 above the ensemble's on four of the seven; at 3e-4, within 0.005 of it).
    :param float lr: initial learning rate (decays tenfold).
    :param int seed: seed.
    :param bool progress_bar: show tqdm bars.
    :param int elbo_particles: particles of the final path-ELBO estimate (0 to skip).
    :param bool own_noise: each component samples its own noise scale where the model learns one (its learned
        scales become latent sites, started at each member's value; see above).  ``False`` keeps the model's
        learned scale, one value shared by all components.
    :param bool laplace: start component ``j``'s std at the Laplace widths at member ``j``, capped at ``init_scale``
        (:func:`~pyro_node_uq.methods.laplace_start.site_widths`; give a wider ``init_scale`` with it), its mean
        moving in units of them.
    :param dict svi_kwargs: passed to :func:`~pyro_node_uq.infer.fit_svi` (``distributed`` is ``False`` unless
        given: under ``torchrun`` the ensemble's members are gathered on rank 0, which fits the guide alone while the
        other ranks return ``None``).
    :param guide_kwargs: passed to :class:`~pyro_node_uq.infer.AutoLangevinMixture` (``reference``, ``score``...).
    :returns: :class:`MethodResult` (``None`` on ranks other than 0 under ``torchrun``).

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> from pyro_node_uq.methods import run_ensemble
        >>> problem = load_problem("chemical", num_train=4)
        >>> model = problem.default_model()
        >>> members = run_ensemble(model, problem.train, num_members=2, num_steps=2, progress_bar=False)
        >>> res = run_langevin_mixture(model, problem.train, warm_start=members, num_iters=2, num_steps=3,
        ...                            num_particles=4, elbo_particles=0, progress_bar=False)
        >>> res.name, res.guide.num_components
        ('langevin_mixture', 2)
    """
    model = as_process_model(model, split)
    options = {} if num_members is None else {"num_members": num_members}
    start = start_from("ensemble", warm_start, model, split, seed=seed, progress_bar=progress_bar, **options)
    if start is None:  # another rank under torchrun: the members are gathered on rank 0, which fits alone
        return None
    members = _member_values(start)
    if own_noise:
        model, members = _own_noise(model, start, members)
    inits = [init_loc(model, seed, values) for values in members]
    lr_scales = {}  # the guide's, known once it is set up: fit_svi reads them after guide_fn has run

    def guide_fn(m):
        guide = AutoLangevinMixture(m, init_loc_fns=inits, num_steps=num_steps, init_scale=init_scale, **guide_kwargs)
        args, kwargs = model.fit_args(split)
        setup_prototype(guide, *args, **kwargs)
        scales = guide.warm_start_lr_scales()
        if laplace:
            sites = [name for name, _ in guide.prototype_trace.iter_stochastic_nodes()]
            starts = [site_widths(m, split, values, sites, init_scale) for values in members]
            guide.scale = torch.stack([widths for _, widths, _ in starts]).to(guide.loc.dtype)
            loc_in_units(guide, torch.stack([units for _, _, units in starts]))
            scales.pop(f"{pyro_name(guide)}.loc")
        lr_scales.update(scales)
        return guide

    return fit_guide("langevin_mixture", model, guide_fn, split, num_steps=num_iters, lr=lr,
                     num_particles=num_particles, seed=seed, progress_bar=progress_bar, elbo_particles=elbo_particles,
                     start=start, start_values=members[0], lr_scales=lr_scales,
                     **{"distributed": False, **(svi_kwargs or {})})
