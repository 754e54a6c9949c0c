"""Torch modules used by the estimators, and ways to evaluate them."""

import copy

import torch
from torch import nn


class DetectorMLP(nn.Module):
    """Multi-layer perceptron that maps a feature row to one logit.

    Each hidden block is ``Linear -> BatchNorm1d -> LeakyReLU -> Dropout``;
    a final ``Linear(width, 1)`` gives the logit (positive = generated).
    Linear weights use Kaiming-uniform initialisation matched to the
    LeakyReLU slope, biases start at zero.

    Parameters
    ----------
    n_features : int
        Width of the input rows.
    hidden_layer_sizes : tuple of int, default=(1536, 1536, 1536)
        Width of each hidden block.
    dropout : float, default=0.335
        Dropout probability after each block.
    negative_slope : float, default=0.01
        Slope of LeakyReLU for negative inputs.
    batch_norm : bool, default=True
        Whether each block normalises its activations with BatchNorm1d.
    standardize : bool, default=False
        Whether the input rows are standardised first, ``(X - input_mean) /
        input_scale``, with buffers set by :meth:`set_standardization` (zero
        and one until then). As buffers they are saved with the weights.
    """

    def __init__(
        self,
        n_features,
        hidden_layer_sizes=(1536, 1536, 1536),
        dropout=0.335,
        negative_slope=0.01,
        batch_norm=True,
        standardize=False,
    ):
        super().__init__()
        self.standardize = standardize
        if standardize:
            self.register_buffer("input_mean", torch.zeros(n_features))
            self.register_buffer("input_scale", torch.ones(n_features))
        blocks = []
        width = n_features
        for size in hidden_layer_sizes:
            blocks.append(nn.Linear(width, size))
            if batch_norm:
                blocks.append(nn.BatchNorm1d(size))
            blocks += [nn.LeakyReLU(negative_slope), nn.Dropout(dropout)]
            width = size
        self.hidden = nn.Sequential(*blocks)
        self.output = nn.Linear(width, 1)
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_uniform_(layer.weight, a=negative_slope, nonlinearity="leaky_relu")
                nn.init.zeros_(layer.bias)

    @torch.no_grad()
    def set_standardization(self, X, chunk_rows=65536):
        """Set the input standardisation to the mean and standard deviation of rows ``X``.

        Computed in float64, ``chunk_rows`` rows at a time (two passes), so the
        memory needed does not grow with the number of rows. Features that do
        not vary in ``X`` keep a scale of one.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The training rows.
        chunk_rows : int, default=65536
            Rows converted to float64 at a time.
        """
        X = torch.as_tensor(X)

        def chunks():
            for start in range(0, len(X), chunk_rows):
                yield X[start:start + chunk_rows].double()

        mean = sum(chunk.sum(dim=0) for chunk in chunks()) / len(X)
        variance = sum(((chunk - mean) ** 2).sum(dim=0) for chunk in chunks()) / len(X)
        std = variance.sqrt()
        self.input_mean.copy_(mean)
        self.input_scale.copy_(torch.where(std > 1e-12, std, torch.ones_like(std)))

    def forward(self, X):
        """The logit of each row.

        Parameters
        ----------
        X : torch.Tensor of shape (n_samples, n_features)
            Input rows, standardised here when ``standardize``.

        Returns
        -------
        torch.Tensor of shape (n_samples,)
            One logit a row.
        """
        if self.standardize:
            X = (X - self.input_mean) / self.input_scale
        return self.output(self.hidden(X)).squeeze(-1)


def state_spec(n_features, **network_params):
    """Shape and dtype of every tensor of a :class:`DetectorMLP`'s ``state_dict``.

    The network is built on torch's "meta" device, which allocates nothing,
    so the answer costs next to nothing whatever the sizes.

    Parameters
    ----------
    n_features : int
        Width of the input rows.
    **network_params
        The other arguments of :class:`DetectorMLP`.

    Returns
    -------
    dict
        ``{name: (shape, dtype)}``.
    """
    with torch.device("meta"):
        module = DetectorMLP(n_features, **network_params)
    return {name: (tuple(t.shape), t.dtype) for name, t in module.state_dict().items()}


def float64_copy(module):
    """A float64 copy of ``module`` in evaluation mode; ``module`` is left untouched.

    A float32 matrix product rounds differently depending on how many rows it
    multiplies, so in float32 a sample's output would depend on the batch it
    is computed in; in float64 the difference stays far below float32's
    resolution. Since the copy is private to its caller, several threads may
    each evaluate their own at once. Where float64 is missing (Apple MPS) the
    module itself is returned (it must then be in evaluation mode).

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    torch.nn.Module
    """
    if next(module.parameters()).device.type == "mps":
        return module
    return copy.deepcopy(module).double().eval()
