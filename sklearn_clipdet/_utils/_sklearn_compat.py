"""scikit-learn's private parameter validation, imported in one place.

``sklearn.utils._param_validation`` is private to scikit-learn; the estimators
and public functions of this package use it as scikit-learn's own do. Should
it move or change, this module is the one place to adapt (imbalanced-learn
keeps the same fence in ``imblearn.utils._sklearn_compat``).
"""

from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
    validate_parameter_constraints,
    validate_params,
)

__all__ = [
    "Interval",
    "InvalidParameterError",
    "StrOptions",
    "validate_parameter_constraints",
    "validate_params",
]
