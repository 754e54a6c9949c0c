"""Train RobustMLPClassifier on precomputed feature rows and report test AUC.

Runs offline: the features are synthetic stand-ins for 1536-d CLIP image+text
embeddings (label 1 = generated), so no CLIP model is needed.

    python examples/classifier_on_features.py
"""

import argparse

from sklearn.datasets import make_classification
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from sklearn_clipdet import RobustMLPClassifier


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)

    X, y = make_classification(
        n_samples=2000, n_features=1536, n_informative=32, n_redundant=32, random_state=0
    )
    X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)

    # The paper's network, loss and optimiser; a batch size and epoch count sized for 1500 rows.
    clf = RobustMLPClassifier(batch_size=128, max_epochs=args.epochs, random_state=0, verbose=1)
    clf.fit(X_train, y_train)
    scores = clf.predict_proba(X_test)[:, 1]
    print(f"test ROC AUC: {roc_auc_score(y_test, scores):.4f}")


if __name__ == "__main__":
    main()
