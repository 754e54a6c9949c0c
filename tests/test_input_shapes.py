"""Input tables and arrays of odd shapes (issue 19 item 16): duplicate or MultiIndex
columns are refused with a message saying what to do, an (n, 1) object array of
paths (``df[["image"]].to_numpy()``, a ColumnTransformer's output) is accepted."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer

from sklearn_clipdet import CLIPFeaturizer

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_images"


@pytest.fixture(scope="module")
def featurizer(tiny_model_name):
    return CLIPFeaturizer(tiny_model_name, None, modalities="image", device="cpu").fit(None)


@pytest.fixture(scope="module")
def paths():
    return sorted(str(p) for p in (SAMPLE_DIR / "train").rglob("*.jpg"))[:3]


def test_duplicate_image_columns_are_refused_by_name(featurizer, paths):
    X = pd.DataFrame([paths, paths]).T
    X.columns = ["image", "image"]
    with pytest.raises(ValueError, match=r"2 columns under 'image'.*rename the duplicates"):
        featurizer.transform(X)


def test_multiindex_columns_need_the_full_tuple(featurizer, tiny_model_name, paths):
    X = pd.DataFrame({("image", "path"): paths, ("image", "size"): [1, 2, 3]})
    with pytest.raises(ValueError, match=r"full tuple"):
        featurizer.transform(X)
    by_tuple = CLIPFeaturizer(tiny_model_name, None, modalities="image", device="cpu",
                              image_column=("image", "path")).fit(None)
    np.testing.assert_array_equal(by_tuple.transform(X), featurizer.transform(paths))


def test_an_n_by_1_object_array_is_one_sample_a_row(featurizer, paths):
    column = pd.DataFrame({"image": paths})[["image"]].to_numpy()
    assert column.shape == (3, 1) and column.dtype == object
    np.testing.assert_array_equal(featurizer.transform(column), featurizer.transform(paths))


def test_a_column_transformer_feeds_the_featurizer(featurizer, paths):
    table = pd.DataFrame({"image": paths, "other": [1, 2, 3]})
    transformer = ColumnTransformer([("clip", featurizer, ["image"])])
    np.testing.assert_array_equal(transformer.fit_transform(table),
                                  featurizer.transform(paths))


def test_an_object_array_of_several_columns_is_refused(featurizer, paths):
    X = np.array([[p, "a caption"] for p in paths], dtype=object)
    with pytest.raises(ValueError, match=r"shape \(n,\) or \(n, 1\); got shape \(3, 2\)"):
        featurizer.transform(X)
