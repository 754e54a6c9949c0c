"""scikit-learn's own estimator checks over RobustMLPClassifier."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_clipdet import RobustMLPClassifier


def _small_classifier():
    # The checks fit dozens of times on a few hundred rows: a narrow network
    # with a larger step size learns these toy problems in a few epochs.
    return RobustMLPClassifier(
        hidden_layer_sizes=(32,), batch_size=64, max_epochs=15, lr=1e-2, random_state=0
    )


@parametrize_with_checks([_small_classifier()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
