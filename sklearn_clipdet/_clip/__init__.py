"""The CLIP wing behind :class:`~sklearn_clipdet.CLIPFeaturizer`: the backbone and
where its weights come from, intermediate image layers, and the on-disk feature cache."""
