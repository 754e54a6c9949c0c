"""Helpers shared by both wings: device choice, validation, optional imports, atomic
files, and the one import site of scikit-learn's and open_clip's private names."""
