"""How far an image lies from a detector's training data.

A detector trained on art and snapshots scores photographs without a word of doubt. The
classifier standardises its inputs with the mean and spread of its training rows, so the
root mean square of a row's standardised features says how far the row lies from them:
about 1 for rows like the training ones (exactly 1 on average over the training rows),
more for rows unlike them. It is a coarse signal, not a calibrated probability.
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._common import check_pipeline

__all__ = ["training_distance"]


def training_distance(detector, X):
    """Root mean square of each sample's standardised features: its distance from training.

    Parameters
    ----------
    detector : Pipeline
        A fitted detector whose last step is a
        :class:`~sklearn_clipdet.RobustMLPClassifier` with ``standardize=True``
        (the default), such as the shipped one.
    X : DataFrame or sequence
        The samples, as the detector takes them.

    Returns
    -------
    ndarray of shape (n_samples,)
        About 1 for samples like the training rows, larger for samples unlike
        them; NaN for images that could not be read (with ``on_error="nan"``).
        For the shipped detector, the median over the photoreal sources it was
        trained on is 0.96 to 1.07; over COCO snapshots and Stable Diffusion
        art, 1.15 (``benchmarks/build_pretrained.py``, section 4).

    Raises
    ------
    ValueError
        When the classifier does not standardise its inputs.
    """
    check_pipeline(detector, "training_distance")
    head = detector[-1]
    check_is_fitted(head)
    module = getattr(head, "module_", None)
    if not getattr(module, "standardize", False):
        raise ValueError(
            "training_distance needs a classifier that standardises its inputs "
            "(RobustMLPClassifier(standardize=True), the default); it measures distance in "
            "units of the training rows' spread."
        )
    features = np.asarray(detector[:-1].transform(X), dtype=np.float64)
    mean = module.input_mean.detach().cpu().double().numpy()
    scale = module.input_scale.detach().cpu().double().numpy()
    return np.sqrt((((features - mean) / scale) ** 2).mean(axis=1))
