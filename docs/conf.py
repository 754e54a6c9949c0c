"""Sphinx configuration: user guide in Markdown (MyST), API reference from numpydoc docstrings."""

import sklearn_clipdet

project = "sklearn-clipdet"
author = "sklearn-clipdet developers"
release = version = sklearn_clipdet.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3

templates_path = ["_templates"]
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_validation_checks = set()
# Classes inherited from skorch and scikit-learn carry their own docstring styles.
suppress_warnings = ["autosummary.import_cycle"]

intersphinx_mapping = {}  # offline builds: no inventories are fetched
html_theme = "alabaster"
html_title = f"sklearn-clipdet {release}"
