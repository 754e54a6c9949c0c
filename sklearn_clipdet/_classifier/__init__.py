"""The classifier wing behind :class:`~sklearn_clipdet.RobustMLPClassifier`: the
bridge between skorch's parameter names and the flat ones, checks, batches on the
device, and training callbacks."""
