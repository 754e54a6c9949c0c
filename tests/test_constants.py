"""The torch-free constants agree with the library they describe."""

import inspect
import subprocess
import sys

from sklearn_clipdet import CLIPFeaturizer, RobustMLPClassifier, _constants
from sklearn_clipdet.evaluation import default_perturbations


def test_constants_import_nothing():
    check = ("import sys, sklearn_clipdet._constants, sklearn_clipdet.cli; "
             "assert 'torch' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_defaults_are_those_of_the_estimators():
    featurizer = inspect.signature(CLIPFeaturizer).parameters
    assert featurizer["model_name"].default == _constants.DEFAULT_MODEL_NAME
    assert featurizer["pretrained"].default == _constants.DEFAULT_PRETRAINED
    assert featurizer["batch_size"].default == _constants.DEFAULT_FEATURIZER_BATCH_SIZE
    assert featurizer["precision"].default == _constants.PRECISIONS[0]
    assert featurizer["on_error"].default == _constants.ON_ERROR[0]
    assert featurizer["modalities"].default == _constants.MODALITIES[0]
    classifier = inspect.signature(RobustMLPClassifier).parameters
    assert classifier["max_epochs"].default == _constants.DEFAULT_MAX_EPOCHS
    assert classifier["batch_size"].default == _constants.DEFAULT_BATCH_SIZE
    assert tuple(default_perturbations()) == _constants.PERTURBATIONS


def test_feature_neutral_params_are_featurizer_params():
    assert set(_constants.FEATURE_NEUTRAL_PARAMS) <= set(CLIPFeaturizer().get_params())
