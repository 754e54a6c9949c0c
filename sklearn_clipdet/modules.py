"""Torch modules used by the estimators."""

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
    """

    def __init__(
        self,
        n_features,
        hidden_layer_sizes=(1536, 1536, 1536),
        dropout=0.335,
        negative_slope=0.01,
        batch_norm=True,
    ):
        super().__init__()
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

    def forward(self, X):
        return self.output(self.hidden(X)).squeeze(-1)
