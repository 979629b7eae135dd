"""ArviZ ``InferenceData`` of a model of independent (x, y) pairs (an SDE-BNN on a static problem): the part of
:func:`~pyro_node_uq.diagnostics.to_inference_data` after the vectorised trace, with dims ``observation``
(coords: ``split.ids``), ``output`` (regression), ``class`` (classification) and ``input``."""
import torch

from .az_convert import from_dict
from .az_convert import numpy as _numpy
from .pointwise import pointwise_log_likelihood

__all__ = ["static_inference_data"]


def static_inference_data(trace, draws, split, obs_dims, obs_site="obs", output_names=None, input_names=None,
                          stats=None, attrs=None):
    """Groups ``posterior`` (latent sites and the deterministic sites of the trace), ``posterior_predictive``,
    ``log_likelihood`` (one value per point), ``observed_data``, ``constant_data`` (``x``) and ``sample_stats``.

    :param trace: the vectorised ``Predictive`` trace of the model on ``split`` conditioned on the ``C * D``
        draws.
    :param dict draws: site -> ``(C, D, ...)`` posterior draws.
    :param split: the :class:`~pyro_node_uq.data.StaticSplit`.
    :param tuple obs_dims: the observation site's dims (``("observation",)`` or ``("observation", "output")``).
    :param output_names: coords of ``output`` (regression) or ``class`` (classification).
    :param input_names: coords of ``input``.
    :param dict stats: per-draw sampler statistics ``(C, D)``, or ``None``.
    :param dict attrs: attributes of every group.
    :rtype: arviz.InferenceData
    """
    C, D = next(iter(draws.values())).shape[:2]
    site = trace.nodes[obs_site]
    y = site["value"]
    log_lik = pointwise_log_likelihood(site["fn"], y).reshape(C, D, -1)
    with torch.no_grad():
        pred = site["fn"].sample().reshape((C, D) + y.shape)
    posterior = {k: _numpy(v) for k, v in draws.items()}
    dims = {}
    last = "class" if obs_dims == ("observation",) else "output"
    for name, node in trace.nodes.items():
        if node["type"] == "sample" and node["infer"].get("_deterministic"):
            value = node["value"]
            posterior[name] = _numpy(value.reshape((C, D) + value.shape[-2:]).expand((C, D) + value.shape[-2:]))
            dims[name] = ["observation", last]
    for name, value in draws.items():  # latents of each input point (an SDE-BNN's terminal features)
        if value.dim() == 4 and value.shape[2] == len(split):
            dims[name] = ["observation", f"{name}_dim"]
    width = next((posterior[k].shape[-1] for k in dims if k not in draws), y.shape[-1] if y.dim() > 1 else 1)
    names = list(output_names) if output_names is not None and len(output_names) == width else list(range(width))
    coords = {"observation": _numpy(split.ids), "input": list(input_names or range(split.x.shape[-1])), last: names}
    dims["x"] = ["observation", "input"]
    data_dims = {obs_site: list(obs_dims)}
    idata = from_dict(posterior=posterior, posterior_predictive={obs_site: _numpy(pred)},
                      log_likelihood={obs_site: _numpy(log_lik.double())}, observed_data={obs_site: _numpy(y)},
                      constant_data={"x": _numpy(split.x)},
                      sample_stats={k: _numpy(v) for k, v in stats.items()} if stats else None,
                      coords=coords, dims={**dims, **data_dims}, attrs=attrs or {})
    return idata
