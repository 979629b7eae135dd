"""LTAU: loss-trajectory analysis for uncertainty (Vita et al., 2024), with faiss nearest-neighbour search.

During ordinary training a :class:`LossTrajectoryRecorder` logs every training sample's error at every epoch;
each sample's logged errors form its empirical error distribution.  After training, the final model's latent
features of the training samples (standardised) go into a faiss index (exact ``IndexFlatL2`` or graph-based
``IndexHNSWFlat``).  A test point's predicted error distribution is the average of the distributions of its
k nearest training samples; the mean neighbour distance is its out-of-domain score.  No ensemble is trained.
For NODE trajectories the features are the hidden state, the time and (by default) the inputs, and the
calibration on validation trajectories may add a trajectory memory (:mod:`~pyro_node_uq.infer.ltau.memory`).
"""
import os

import numpy as np
import torch

from ...utils.persist import MANIFEST, SaveError, load_unit, save_unit, unit_lock
from ...validation import MAX_SIZE, check_int
from .calibration import ErrorCalibration, default_memories
from .distribution import ErrorDistribution
from .faiss_file import faiss_module as _faiss
from .faiss_file import read_faiss_index
from .node import NODETrainingMonitor, node_features, node_keys, node_latent
from .recorder import LossTrajectoryRecorder, load_torch_file

__all__ = ["LTAU"]


def _features(features, name, dim=None):
    features = torch.as_tensor(features).detach().to(device="cpu", dtype=torch.float64)  # faiss indexes on the CPU
    if features.dim() != 2 or features.shape[0] < 1:
        raise ValueError(f"{name}: expected a non-empty 2-D (points, features) tensor, got {tuple(features.shape)}")
    if dim is not None and features.shape[1] != dim:
        raise ValueError(f"{name}: expected {dim} features per point (as in fit), got {features.shape[1]}")
    if not torch.isfinite(features).all():
        raise ValueError(f"{name}: contain NaN or inf")
    return features


class LTAU:
    """Error distributions and out-of-domain scores from loss trajectories and latent nearest neighbours.

    :param int k: number of nearest training samples averaged.
    :param str index: ``"flat"`` (exact ``faiss.IndexFlatL2``) or ``"hnsw"`` (``faiss.IndexHNSWFlat``).
    :param int hnsw_m: HNSW graph degree.
    :param int ef_search: HNSW search breadth (larger: closer to exact).
    :param recorder: a :class:`LossTrajectoryRecorder` (default: a new one built from ``recorder_kwargs``).
    :param bool inputs: NODE features include the inputs ``x`` at each time (when the split has inputs).
    :param recorder_kwargs: ``mode``, ``bins``, ``error_range`` of a new recorder.

    Example (a NODE fitted by MAP; recording rides on the training steps)::

        >>> from pyro_node_uq.data import load_problem
        >>> from pyro_node_uq.methods import run_map
        >>> problem = load_problem("chemical", num_train=4)
        >>> model, ltau = problem.default_model(), LTAU(k=5)
        >>> monitor = ltau.monitor(problem.train)
        >>> with monitor:
        ...     fit = run_map(model, problem.train, num_steps=20, callback=monitor, progress_bar=False)
        >>> _ = ltau.fit_node(model, fit.guide, problem.train)
        >>> pred = ltau.predict_node(model, fit.guide, problem.test)
        >>> pred.mean.shape, pred.quantile(torch.tensor([0.1, 0.9])).shape
        (torch.Size([16, 41]), torch.Size([16, 41, 2]))
    """

    def __init__(self, k=10, index="flat", hnsw_m=32, ef_search=128, recorder=None, inputs=True, **recorder_kwargs):
        k = check_int(k, "k", 1, MAX_SIZE)
        if index not in ("flat", "hnsw"):
            raise ValueError(f"index must be 'flat' or 'hnsw', got {index!r}")
        hnsw_m, ef_search = check_int(hnsw_m, "hnsw_m", 2, 4096), check_int(ef_search, "ef_search", 1, MAX_SIZE)
        self.k, self.index_type, self.hnsw_m, self.ef_search = k, index, hnsw_m, ef_search
        self.inputs = bool(inputs)
        self.recorder = recorder if recorder is not None else LossTrajectoryRecorder(**recorder_kwargs)
        self.index = None
        self.loc = self.scale = self.rows = None
        self.calibration = None

    # ------------------------------------------------------------------ recording
    def record(self, keys, errors):
        """Log this epoch's errors of the samples ``keys`` (see :meth:`LossTrajectoryRecorder.record`)."""
        self.recorder.record(keys, errors)

    def monitor(self, split, **kwargs):
        """A :class:`NODETrainingMonitor` feeding this LTAU's recorder from a NODE training loop."""
        return NODETrainingMonitor(self.recorder, split, **kwargs)

    # ------------------------------------------------------------------ the index
    def fit(self, features, keys):
        """Index the final model's latent ``features`` ``(n, d)`` of the recorded training samples ``keys`` ``(n,)``."""
        features = _features(features, "features")
        rows = self.recorder.rows(keys)
        if len(rows) != len(features):
            raise ValueError(f"keys: expected one key per feature row ({len(features)}), got {len(rows)}")
        self.loc = features.mean(0)
        sd = features.std(0, unbiased=False)
        self.scale = torch.where(sd > 1e-12 * (1 + self.loc.abs()), sd, torch.ones_like(sd))
        self.rows = rows
        self.index = self._build_index(self._standardise(features))
        return self

    def _standardise(self, features):
        return np.ascontiguousarray(((features - self.loc) / self.scale).numpy().astype(np.float32))

    def _build_index(self, x):
        faiss = _faiss()
        if self.index_type == "flat":
            index = faiss.IndexFlatL2(x.shape[1])
        else:
            index = faiss.IndexHNSWFlat(x.shape[1], self.hnsw_m)
            index.hnsw.efSearch = self.ef_search
        index.add(x)
        return index

    def neighbours(self, features):
        """Indices into the fitted training rows ``(M, k)`` and Euclidean distances ``(M, k)``."""
        if self.index is None:
            raise RuntimeError("LTAU: call fit() (or fit_node()) before predicting")
        features = _features(features, "features", dim=len(self.loc))
        k = min(self.k, self.index.ntotal)
        dist2, idx = self.index.search(self._standardise(features), k)
        if (idx < 0).any():
            raise RuntimeError("LTAU: the index returned fewer than k neighbours; raise ef_search")
        return torch.from_numpy(idx).long(), torch.from_numpy(dist2).double().clamp(min=0).sqrt()

    def predict(self, features, batch_shape=None, times=None):
        """Averaged error distributions of the k nearest training samples of each point.

        :param features: latent features ``(M, d)`` of the test points.
        :param batch_shape: reshape the ``M`` points to this shape in the outputs.
        :param times: times ``(T,)`` of the last axis of ``batch_shape`` when the points are trajectories
            (enables a calibration memory).
        :rtype: ErrorDistribution
        """
        idx, dist = self.neighbours(features)
        rows = self.rows[idx]  # (M, k) recorder rows
        values, weights = self.recorder.distributions(rows)
        k = rows.shape[1]
        values = values.reshape(len(rows), -1)
        weights = weights.reshape(len(rows), -1) / k
        mean = self.recorder.means(rows).mean(-1)
        return ErrorDistribution(values, weights, dist.mean(-1), mean=mean, batch_shape=batch_shape,
                                 calibration=self.calibration, times=times)

    def calibrate(self, prediction, errors, method="isotonic", distance_scaling=True, memories=None):
        """Fit the calibration on validation predictions and their true errors; later predictions use it.

        :param ErrorDistribution prediction: :meth:`predict` output on validation points (for trajectories:
            whole validation trajectories, e.g. :meth:`predict_node` output).
        :param errors: their true errors, shape ``prediction.batch_shape``.
        :param str method: ``"isotonic"`` or ``"scale"`` (see :class:`ErrorCalibration`).
        :param bool distance_scaling: let the error scale grow with the neighbour distance.
        :param memories: candidate trajectory memories; default: :func:`default_memories` of the prediction's
            times if it has them, else none.
        """
        if memories is None:
            memories = (0.0,) if prediction.times is None else default_memories(prediction.times)
        self.calibration = ErrorCalibration.fit(prediction, errors, method=method, distance_scaling=distance_scaling,
                                                memories=memories)
        return self.calibration

    # ------------------------------------------------------------------ NODE conveniences
    def _node_features(self, model, guide, split):
        hidden, _ = node_latent(model, guide, split)
        return node_features(hidden, split.t, split.x if self.inputs else None)

    def fit_node(self, model, guide, split):
        """Index the hidden state, time (and inputs) of every observed training point at the guide's median."""
        features = self._node_features(model, guide, split)
        observed = torch.ones(features.shape[:2], dtype=torch.bool) if split.mask is None else split.mask.cpu()
        observed = observed if observed.dim() == 2 else observed.any(-1)
        return self.fit(features[observed], node_keys(split)[observed])

    def predict_node(self, model, guide, split):
        """Error distributions of every (trajectory, time) point of ``split``, batch shape ``(N, T)``."""
        features = self._node_features(model, guide, split)
        return self.predict(features.reshape(-1, features.shape[-1]), batch_shape=features.shape[:2], times=split.t)

    # ------------------------------------------------------------------ persistence
    _FILES = ("recorder.pt", "index.faiss", "ltau.pt")
    _STATE_KEYS = ("k", "index", "hnsw_m", "ef_search", "loc", "scale", "rows", "calibration")

    def save(self, directory):
        """Save the recorder, the faiss index and the standardisation/calibration to ``directory`` as one unit.

        The three files are written into a fresh folder and committed by atomically replacing the folder's
        ``MANIFEST.json`` (format version, files, checksums): a save that fails or is killed at any point leaves
        the previous save in ``directory`` loadable and unchanged (see :func:`~pyro_node_uq.utils.persist.save_unit`).
        """
        if self.index is None:
            raise RuntimeError("LTAU: nothing to save before fit(); save the recorder with recorder.save()")
        state = {"k": self.k, "index": self.index_type, "hnsw_m": self.hnsw_m, "ef_search": self.ef_search,
                 "inputs": self.inputs,
                 "loc": self.loc, "scale": self.scale, "rows": self.rows,
                 "calibration": None if self.calibration is None else self.calibration.state_dict()}
        rec, idx, meta = self._FILES
        save_unit(directory, {rec: lambda p: torch.save(self.recorder.state_dict(), p),
                              idx: lambda p: _faiss().write_index(self.index, p),
                              meta: lambda p: torch.save(state, p)}, kind="ltau")

    @classmethod
    def load(cls, directory, unverified=False):
        """Load an :class:`LTAU` written by :meth:`save`, after checking its manifest and checksums.

        The folder's lock is held while reading, so a load waits for a save into the same folder to finish
        (and a save waits for the load) instead of reading half of each.

        :param bool unverified: also load a save of version 0.1 (the three files without a ``MANIFEST.json``).
            Nothing in those files ties them to one save, so a folder mixed from two saves of the same size cannot
            be detected; they are refused unless you know they belong together (save the loaded LTAU again to get
            a verified save).
        :raises FileNotFoundError: ``directory`` does not exist.
        :raises ~pyro_node_uq.utils.persist.SaveError: the save is incomplete, corrupt or not an LTAU save, or its
            files do not belong together (the message names the file).
        """
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"directory: {directory!r} does not exist or is not a folder (no ltau save)")
        with unit_lock(directory, "ltau", shared=True):
            return cls._load(directory, unverified)

    @classmethod
    def _load(cls, directory, unverified):
        if not os.path.exists(os.path.join(directory, MANIFEST)) \
                and all(os.path.isfile(os.path.join(directory, f)) for f in cls._FILES):
            if not unverified:
                raise SaveError(f"{directory}: an LTAU save of version 0.1 (no {MANIFEST}): its files carry nothing "
                                "that ties them to one save, so a folder mixed from two saves cannot be told "
                                "apart; if they belong together, load it with LTAU.load(directory, unverified=True) "
                                "and save it again")
            paths = {f: os.path.join(directory, f) for f in cls._FILES}
        else:
            paths = load_unit(directory, "ltau")
        missing = [f for f in cls._FILES if f not in paths]
        if missing:
            raise SaveError(f"{directory}: the manifest lacks {missing}; not an LTAU save")
        state = load_torch_file(paths["ltau.pt"], "an LTAU state", cls._STATE_KEYS)
        rec_state = load_torch_file(paths["recorder.pt"], "a loss-trajectory recorder", ("mode", "bins", "keys"))
        recorder = LossTrajectoryRecorder(mode=rec_state["mode"], bins=rec_state["bins"])
        recorder.load_state_dict(rec_state)
        ltau = cls(k=state["k"], index=state["index"], hnsw_m=state["hnsw_m"], ef_search=state["ef_search"],
                   recorder=recorder, inputs=state.get("inputs", False))
        ltau.loc, ltau.scale, ltau.rows = state["loc"], state["scale"], state["rows"]
        ltau.index = read_faiss_index(paths["index.faiss"], dim=len(ltau.loc), size=len(ltau.rows))
        if len(ltau.rows) and int(ltau.rows.max()) >= recorder.num_samples:
            raise SaveError(f"{directory}: the LTAU state ({len(ltau.rows)} rows up to {int(ltau.rows.max())}) and "
                            f"the recorder ({recorder.num_samples} samples) do not belong together")
        if state["index"] == "hnsw":
            ltau.index.hnsw.efSearch = ltau.ef_search
        if state["calibration"] is not None:
            ltau.calibration = ErrorCalibration(**state["calibration"])
        return ltau
