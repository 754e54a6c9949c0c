"""What ``standardize=True`` does on the hardening issue's synthetic task (issue 19 item 11).

``make_classification(n_samples=5000, n_features=1536, n_informative=40, random_state=0)``,
the first 4,000 rows to train and the last 1,000 to test. Printed: the test AUC of
``RobustMLPClassifier(max_epochs=..., batch_size=256, random_state=0)`` with and without
``standardize`` (linear head and one hidden layer of 256), of the same with an external
``StandardScaler`` instead, and of scikit-learn's ``MLPClassifier((256,), max_iter=50)``
and ``LogisticRegression`` with and without a ``StandardScaler``; and the spread of the
features, which says why. No bootstrap: one split of 1,000 test rows. About a minute
on 2 cores::

    python benchmarks/bench_standardize.py
"""

import warnings

import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_clipdet import RobustMLPClassifier


def held_out_auc(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X[:4000], y[:4000])
    return roc_auc_score(y[4000:], model.predict_proba(X[4000:])[:, 1])


def main():
    X, y = make_classification(n_samples=5000, n_features=1536, n_informative=40,
                               random_state=0)
    X = X.astype(np.float32)
    spread = X.std(axis=0)
    wide = spread > 1.5
    print(f"features with a standard deviation over 1.5: {wide.sum()} (median "
          f"{np.median(spread[wide]):.2f}); the other {(~wide).sum()}: median "
          f"{np.median(spread[~wide]):.2f}")
    alone = [held_out_auc(LogisticRegression(max_iter=2000), X[:, columns], y)
             for columns in (wide, ~wide)]
    print(f"LogisticRegression on the wide features alone: {alone[0]:.3f}; "
          f"on the others alone: {alone[1]:.3f}")

    print("\ntest AUC                                 standardize=True  standardize=False  "
          "StandardScaler + False")
    for hidden in [(), (256,)]:
        for epochs in (10, 100):
            def robust(standardize, hidden=hidden, epochs=epochs):
                return RobustMLPClassifier(hidden, max_epochs=epochs, batch_size=256,
                                           random_state=0, standardize=standardize)
            scores = [held_out_auc(robust(True), X, y), held_out_auc(robust(False), X, y),
                      held_out_auc(make_pipeline(StandardScaler(), robust(False)), X, y)]
            name = f"RobustMLPClassifier({hidden}, {epochs} epochs)"
            print(f"{name:42s} {scores[0]:.3f}             {scores[1]:.3f}              "
                  f"{scores[2]:.3f}")

    print("\ntest AUC                                 raw     StandardScaler")
    for name, model in [("MLPClassifier((256,), max_iter=50)",
                         MLPClassifier((256,), max_iter=50, random_state=0)),
                        ("LogisticRegression(max_iter=2000)",
                         LogisticRegression(max_iter=2000))]:
        raw = held_out_auc(model, X, y)
        scaled = held_out_auc(make_pipeline(StandardScaler(), model), X, y)
        print(f"{name:42s} {raw:.3f}   {scaled:.3f}")


if __name__ == "__main__":
    main()
