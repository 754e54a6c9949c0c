"""A cross-validator that holds out one generator per fold, for model selection that generalises."""

import numpy as np
import pandas as pd
from sklearn.model_selection import BaseCrossValidator, KFold
from sklearn.utils import column_or_1d

from .._images import is_missing
from ._common import binary_targets

__all__ = ["LeaveOneGeneratorOut"]


class LeaveOneGeneratorOut(BaseCrossValidator):
    """Leave one generator out: each fold tests on one generator never seen in training.

    A scikit-learn cross-validator for detectors. Fold ``k`` trains on the
    generated images of every generator but the k-th, plus real images, and
    tests on the k-th generator's images plus other real images. Real images
    belong to no generator, so they get a split of their own (``real_cv``, one
    split per generator): every real image is tested exactly once, never by a
    model trained on it, and every test fold holds both classes, so ROC AUC is
    defined in each fold.

    Use it as ``cv`` of :class:`~sklearn.model_selection.GridSearchCV` or
    :func:`~sklearn.model_selection.cross_validate` (pass ``groups``) to
    choose hyperparameters by how well a detector does on generators it did
    not train on, which is what a detector meets in the wild;
    :func:`~sklearn_clipdet.evaluation.cross_generator_report` uses the same folds.

    Parameters
    ----------
    real_cv : cross-validator or None, default=None
        Splits the real images; it must give one split per generator and is
        called with the real images' ``groups`` (so a
        :class:`~sklearn.model_selection.GroupKFold` can keep real images of
        one source together). None means ``KFold(n_generators, shuffle=True,
        random_state=random_state)``.
    pos_label : int, str or None, default=None
        Label of generated images; None means 1 (0/1, -1/1 or boolean labels).
    random_state : int, RandomState instance or None, default=None
        Seeds the default ``real_cv``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clipdet.evaluation import LeaveOneGeneratorOut
    >>> y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    >>> groups = ["real"] * 4 + ["sd14", "sd14", "midjourney", "midjourney"]
    >>> cv = LeaveOneGeneratorOut(random_state=0)
    >>> cv.get_n_splits(y=y, groups=groups)
    2
    >>> [sorted(y[test].tolist()) for _, test in cv.split(np.zeros((8, 1)), y, groups)]
    [[0, 0, 1, 1], [0, 0, 1, 1]]
    """

    def __init__(self, real_cv=None, *, pos_label=None, random_state=None):
        self.real_cv = real_cv
        self.pos_label = pos_label
        self.random_state = random_state

    def generators(self, y, groups):
        """The held-out generator of each fold, in the order of :meth:`split`.

        Parameters
        ----------
        y : array-like of shape (n_samples,)
            Labels of two classes.
        groups : array-like of shape (n_samples,)
            The generator of each generated image; values of real images are
            passed to ``real_cv`` only.

        Returns
        -------
        list
            Sorted generator names.
        """
        return self._generators(*self._check(y, groups))

    def _generators(self, targets, groups):
        generated = np.flatnonzero(targets)
        missing = [int(i) for i in generated if is_missing(groups[i])]
        if missing:
            raise ValueError(
                f"{len(missing)} generated images have no group (generator), rows {missing[:10]}."
            )
        generators = sorted(pd.unique(groups[generated]).tolist(), key=str)
        if len(generators) < 2:
            raise ValueError(
                f"Leaving one generator out needs at least 2 generators; found {generators}."
            )
        return generators

    def get_n_splits(self, X=None, y=None, groups=None):
        """Number of folds: the number of generators in ``groups``.

        Parameters
        ----------
        X : object
            Ignored; present for scikit-learn's splitter interface.
        y : array-like of shape (n_samples,)
            Labels, needed to tell generated samples from real ones.
        groups : array-like of shape (n_samples,)
            The generator of each generated sample.

        Returns
        -------
        int
            The number of generators, one fold each.
        """
        if y is None or groups is None:
            raise ValueError("LeaveOneGeneratorOut needs y and groups to count its folds.")
        return len(self.generators(y, groups))

    def split(self, X, y, groups):
        """Yield ``(train, test)`` indices, one fold per generator (see :meth:`generators`).

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Only its length is used.
        y : array-like of shape (n_samples,)
            Labels of two classes.
        groups : array-like of shape (n_samples,)
            The generator of each generated image.

        Yields
        ------
        train, test : ndarray of int
        """
        targets, groups = self._check(y, groups)
        generators = self._generators(targets, groups)
        if len(X) != len(targets):
            raise ValueError(f"X and y have different lengths: {len(X)} and {len(targets)}.")
        generated, real = np.flatnonzero(targets), np.flatnonzero(~targets)
        real_splits = self._real_splits(real, groups, len(generators))
        for generator, (real_train, real_test) in zip(generators, real_splits):
            held_out = groups[generated] == generator
            train = np.concatenate([generated[~held_out], real[real_train]])
            test = np.concatenate([generated[held_out], real[real_test]])
            yield np.sort(train), np.sort(test)

    def _check(self, y, groups):
        targets, _ = binary_targets(y, self.pos_label)
        groups = column_or_1d(np.asarray(groups, dtype=object))
        if len(groups) != len(targets):
            raise ValueError(
                f"y and groups have different lengths: {len(targets)} and {len(groups)}."
            )
        return targets, groups

    def _real_splits(self, real, groups, n_splits):
        if len(real) < n_splits:
            raise ValueError(
                f"{len(real)} real images cannot be split into {n_splits} folds, one per "
                "generator; every fold needs real test images."
            )
        placeholder = np.zeros((len(real), 1))
        if self.real_cv is None:
            cv = KFold(n_splits, shuffle=True, random_state=self.random_state)
            splits = list(cv.split(placeholder))
        else:
            splits = list(self.real_cv.split(placeholder, groups=groups[real]))
        if len(splits) != n_splits:
            raise ValueError(
                f"real_cv gave {len(splits)} splits of the real images; it must give one per "
                f"generator ({n_splits})."
            )
        for k, (_, test) in enumerate(splits):
            if len(test) == 0:
                raise ValueError(f"real_cv's split {k} has no real test images.")
        return splits
