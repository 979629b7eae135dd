"""Scores of predictive class probabilities ``(S, N, C)`` (one draw per posterior sample) against labels ``(N,)``:
accuracy, NLL and Brier score of the posterior mean probabilities, top-label expected calibration error, and the
predictive entropy as a per-point uncertainty."""
import torch

__all__ = ["classification_scores", "expected_calibration_error", "predictive_entropy", "reliability"]


def _mean_probs(probs, labels):
    if probs.dim() != 3 or probs.shape[1] != labels.shape[0]:
        raise ValueError(f"probs: expected draws (S, N, C) for {labels.shape[0]} labels, got {tuple(probs.shape)}")
    return probs.detach().double().mean(0)


def predictive_entropy(probs):
    """Entropy (nats) of the posterior mean class probabilities of each point, ``(N,)``."""
    p = probs.detach().double().mean(0)
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


def reliability(probs, labels, num_bins=15):
    """Per equal-width confidence bin: ``(mean confidence, accuracy, share of points)``, empty bins dropped."""
    conf, pred = _mean_probs(probs, labels).max(-1)
    correct = (pred == labels).double()
    bins = torch.clamp((conf * num_bins).long(), max=num_bins - 1)
    rows = [(float(conf[bins == b].mean()), float(correct[bins == b].mean()), float((bins == b).double().mean()))
            for b in range(num_bins) if (bins == b).any()]
    return rows


def expected_calibration_error(probs, labels, num_bins=15):
    """Top-label ECE: the share-weighted mean over confidence bins of ``|accuracy - confidence|``."""
    return sum(share * abs(acc - conf) for conf, acc, share in reliability(probs, labels, num_bins))


def classification_scores(probs, labels, num_bins=15):
    """``accuracy``, ``nll`` (mean ``-log`` posterior mean probability of the label), ``brier`` and ``ece``.

    :param torch.Tensor probs: class probabilities ``(S, N, C)`` per posterior draw.
    :param torch.Tensor labels: integer labels ``(N,)``.
    :param int num_bins: confidence bins of the ECE.

    Example::

        >>> probs = torch.tensor([[[0.9, 0.1], [0.2, 0.8]]])
        >>> {k: round(v, 3) for k, v in classification_scores(probs, torch.tensor([0, 0])).items()}
        {'accuracy': 0.5, 'nll': 0.857, 'brier': 0.65, 'ece': 0.45}
    """
    p = _mean_probs(probs, labels)
    onehot = torch.nn.functional.one_hot(labels, p.shape[-1]).double()
    return {"accuracy": float((p.argmax(-1) == labels).double().mean()),
            "nll": float(-p.gather(-1, labels[:, None]).clamp_min(1e-12).log().mean()),
            "brier": float(((p - onehot) ** 2).sum(-1).mean()),
            "ece": expected_calibration_error(probs, labels, num_bins)}
