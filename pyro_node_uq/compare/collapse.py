"""A guard against collapsed uncertainty: a method whose posterior predictive spread of the noise-free mean is far
below a reference method's (AutoNormal by default) on the same test points has most likely collapsed its particles
or its guide toward one point (SVGD particles drawn together, an ensemble whose members agree, a guide whose
scales shrank) or, for a sampler, not moved far from its start (short warm-up), and its intervals are then the noise
band alone."""
import warnings

from .scoring import predictive_spread

__all__ = ["CollapseWarning", "collapse_notes"]


class CollapseWarning(UserWarning):
    """A method's predictive spread is far below the reference method's."""


def mean_spread(pred):
    """Mean over points of the predictive spread (:func:`~pyro_node_uq.compare.scoring.predictive_spread`: the norm
    over outputs of the standard deviation of ``y_mean`` over posterior draws)."""
    return float(predictive_spread(pred["y_mean"]).mean())


def collapse_notes(predictions, stochastic, reference="autonormal", threshold=0.2, split="test"):
    """Methods whose predictive spread on ``split`` is below ``threshold`` times ``reference``'s, each with a note
    (also issued as a :class:`CollapseWarning`).

    :param dict predictions: method name -> split name -> :meth:`MethodResult.predict` output (with ``y_mean``).
    :param set stochastic: the methods that represent parameter uncertainty (point estimates are left out).
    :param str reference: the method whose spread is the yardstick; nothing is checked without it.
    :param float threshold: the spread ratio below which a method is flagged.
    :returns: dict method -> note.

    Example::

        >>> import torch
        >>> wide = {"test": {"y_mean": torch.randn(50, 4, 3, 1)}}
        >>> narrow = {"test": {"y_mean": 0.01 * torch.randn(50, 4, 3, 1)}}
        >>> import warnings; warnings.simplefilter("ignore")
        >>> sorted(collapse_notes({"autonormal": wide, "svgd": narrow}, {"autonormal", "svgd"}))
        ['svgd']
    """
    if reference not in predictions or split not in predictions[reference]:
        return {}
    base = mean_spread(predictions[reference][split])
    if base <= 0.0:
        return {}
    notes = {}
    for name, preds in predictions.items():
        if name == reference or name not in stochastic or split not in preds:
            continue
        ratio = mean_spread(preds[split]) / base
        if ratio < threshold:
            notes[name] = (f"predictive spread of the mean on the {split} points is {ratio:.2f}x {reference}'s "
                           f"(below {threshold:g}x): its particles, chains or guide have likely collapsed toward one "
                           "point or not moved far from their start, and its intervals are then little more than "
                           "the noise band")
            warnings.warn(f"{name}: {notes[name]}", CollapseWarning, stacklevel=2)
    return notes
