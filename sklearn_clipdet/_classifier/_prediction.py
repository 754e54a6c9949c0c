"""Prediction of a fitted classifier: logits, probabilities, labels and accuracy, with NaN
for the rows that hold no image (NaN throughout, as a featurizer with ``on_error="nan"``
marks the images it could not read)."""

import numpy as np
import torch
from sklearn.metrics import accuracy_score
from sklearn.utils.validation import check_is_fitted, validate_data

from .._utils._validation import preview, unread_rows
from ._checks import X_VALIDATION, float32_rows

__all__ = ["PredictionMixin"]


class PredictionMixin:
    """``decision_function``, ``predict_proba``, ``predict`` and ``score`` of a binary
    skorch classifier whose ``forward`` gives one logit a row, for ``classes_[1]``."""

    def decision_function(self, X):
        """Logit of ``classes_[1]`` for each row; NaN for a row that is NaN throughout.

        A featurizer with ``on_error="nan"`` marks an image it could not read
        (and warns) with such a row, so a pipeline scores the images it read
        and gives NaN for the others. Other NaN or inf values raise, naming the
        rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature rows.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, **X_VALIDATION)
        unread = unread_rows(X)
        if unread.any():  # scored as zeros, then marked: row numbers in errors stay the user's
            X = np.where(unread[:, None], 0, X)
        logits = self.forward(float32_rows(X), training=False).numpy()
        logits[unread] = np.nan
        return logits

    def predict_proba(self, X):
        """Class probabilities, columns ordered as ``classes_``; NaN for a row that is
        NaN throughout (see :meth:`decision_function`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature rows.

        Returns
        -------
        ndarray of shape (n_samples, 2)
        """
        logits = torch.from_numpy(self.decision_function(X))
        return torch.stack([torch.sigmoid(-logits), torch.sigmoid(logits)], dim=1).numpy()

    def predict(self, X):
        """Predicted class labels; NaN for a row that is NaN throughout (see
        :meth:`decision_function`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature rows.

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_``, with their dtype when every row has one;
            with NaN rows, float for numeric classes and object otherwise.
        """
        positive = self.predict_proba(X)[:, 1]
        labels = self._decide(positive)
        unread = np.isnan(positive)
        if unread.any():
            numeric = np.issubdtype(labels.dtype, np.number)
            labels = labels.astype(float if numeric else object)
            labels[unread] = np.nan
        return labels

    def _decide(self, positive):
        """The label of each probability of ``classes_[1]``, at ``threshold``."""
        return self.classes_[(positive > self.threshold).astype(np.intp)]

    def score(self, X, y, sample_weight=None):
        """Mean accuracy of :meth:`predict` on ``X`` against ``y``.

        Rows NaN throughout (images a featurizer could not read) have no
        prediction to compare: they raise a ValueError naming them.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature rows.
        y : array-like of shape (n_samples,)
            True labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows in the mean.

        Returns
        -------
        float
        """
        positive = self.predict_proba(X)[:, 1]
        unread = np.flatnonzero(np.isnan(positive))
        if unread.size:
            raise ValueError(
                f"X has {unread.size} row(s) NaN throughout (images that could not be "
                f"read): {preview(unread)}. They have no prediction to score: leave them out."
            )
        return accuracy_score(y, self._decide(positive), sample_weight=sample_weight)
