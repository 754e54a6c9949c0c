"""What a fitted classifier holds besides its network: its classes and generated label,
and restoring that state from a detector file."""

import warnings
from numbers import Real

import numpy as np
import torch

from ..modules import state_spec
from ._checks import check_state, positive_int

__all__ = ["FittedStateMixin"]


class FittedStateMixin:
    """``classes_``, ``generated_label_`` and the fitted state restored from saved values.

    The class using it defines ``_check_params`` and ``_network_params`` and
    builds its network with skorch's ``initialize``.
    """

    @property
    def classes_(self):
        if not hasattr(self, "_classes"):
            raise AttributeError(f"{type(self).__name__} has no classes_ before fit.")
        return self._classes

    def _check_known_labels(self, y):
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(
                f"y holds labels {unknown.tolist()} that are not in classes_ "
                f"{self.classes_.tolist()}."
            )

    @staticmethod
    def _generated_label(label, classes, warn=True):
        """``label`` checked against ``classes``, or ``classes[1]`` for None (see the class doc)."""
        labels = classes.tolist()
        if label is None:
            if warn and not all(isinstance(label, Real) for label in labels):
                warnings.warn(
                    f"The labels are {labels}; column 1 of predict_proba is the probability "
                    f"of {labels[1]!r} (classes_ are sorted), and evaluation tools and the "
                    f"command line score that class. If {labels[0]!r} marks the generated "
                    f"images, set generated_label={labels[0]!r}; set "
                    f"generated_label={labels[1]!r} to confirm the default and silence "
                    "this warning.",
                    UserWarning,
                    stacklevel=4,
                )
            return classes[1]
        if label not in labels:
            raise ValueError(f"generated_label={label!r} is not one of the classes {labels}.")
        return classes[labels.index(label)]

    def _restore_fitted(self, *, classes, n_features_in, feature_names_in, state_dict):
        """Make this unfitted classifier the fitted one these values describe.

        For :func:`~sklearn_clipdet.load_detector`. Everything is checked before
        the network is built, so a damaged or crafted description fails fast with
        a ValueError (or TypeError), whatever sizes it claims.

        Parameters
        ----------
        classes : ndarray of shape (2,)
            The two labels, sorted and distinct.
        n_features_in : int
            Width of the input rows.
        feature_names_in : list of str or None
            Column names seen in fit.
        state_dict : dict of str to torch.Tensor
            The network's ``state_dict``.

        Returns
        -------
        self
            Fitted and in evaluation mode.
        """
        self._check_params(self.get_params(deep=False))
        labels = classes.tolist()
        if len(labels) != 2 or np.unique(classes).tolist() != labels:
            raise ValueError(f"classes must be two distinct labels in sorted order, got {labels}.")
        if not positive_int(n_features_in):
            raise ValueError(f"n_features_in must be a positive integer, got {n_features_in!r}.")
        if feature_names_in is not None and (
            len(feature_names_in) != n_features_in
            or not all(isinstance(name, str) for name in feature_names_in)
        ):
            raise ValueError(f"feature_names_in must be {n_features_in} strings.")
        check_state(state_dict, state_spec(n_features_in, **self._network_params()))

        self._classes = classes
        self.generated_label_ = self._generated_label(self.generated_label, classes, warn=False)
        self.n_features_in_ = n_features_in
        if feature_names_in is not None:
            self.feature_names_in_ = np.array(feature_names_in, dtype=object)
        with torch.random.fork_rng(devices=[]):  # the initial weights are replaced at once
            self.initialize()
        self.module_.load_state_dict(state_dict)
        self.module_.eval()
        return self
