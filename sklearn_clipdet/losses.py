"""Training objectives of the robust detector.

The method combines two views of the per-sample binary cross-entropy:

- CVaR (conditional value at risk) at level ``alpha`` focuses training on the
  worst ``alpha``-fraction of the samples in each batch;
- a pairwise AUC surrogate pushes every generated image's logit above every
  real image's logit by a margin.

All functions take and return torch tensors, stay on the input's device,
never synchronise with the host and are differentiable.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

LOSSES = ("cvar_auc", "bce", "cvar", "auc")


def cvar_loss(losses, alpha):
    """Conditional value at risk of per-sample losses, in closed form.

    CVaR at level ``alpha`` is ``min over lambda of lambda + mean((l - lambda)+) / alpha``.
    Its minimiser is the ``(1 - alpha)`` quantile of the losses, so the value is
    the mean of the worst ``alpha * n`` losses, where the boundary sample enters
    with the fractional weight ``alpha * n - floor(alpha * n)``. The quantile is
    found by selection on the device, with no search and no host round trip.

    Parameters
    ----------
    losses : torch.Tensor of shape (n,)
        Per-sample losses.
    alpha : float in (0, 1]
        Fraction of the worst samples that count. ``alpha=1`` gives the mean,
        a small ``alpha`` tends to the maximum.

    Returns
    -------
    torch.Tensor
        Scalar tensor.
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}.")
    losses = losses.reshape(-1)
    n = losses.shape[0]
    if n == 0:
        raise ValueError("cvar_loss needs at least one loss value.")
    mass = alpha * n  # number of samples, possibly fractional, that the CVaR averages
    n_full = min(math.floor(mass), n)  # samples that count with weight 1
    # The minimising lambda is the (n_full + 1)-th largest loss, found by
    # selection in O(n); when every sample counts fully it is the smallest.
    lam = torch.kthvalue(losses, max(n - n_full, 1)).values
    return lam + (losses - lam).clamp_min(0.0).sum() / mass


def pairwise_auc_loss(scores, targets, margin=0.6, power=2.0):
    """Squared-hinge surrogate of ``1 - AUC`` over all positive/negative pairs.

    For every pair of a positive sample ``p`` (target 1, generated) and a
    negative sample ``n`` (target 0, real) the loss is
    ``max(0, margin - (s_p - s_n)) ** power``; the result is the mean over pairs.
    A batch holding only one class has no pair and contributes 0.

    Parameters
    ----------
    scores : torch.Tensor of shape (n,)
        Logits.
    targets : torch.Tensor of shape (n,)
        Binary targets (0 or 1, any dtype).
    margin : float, default=0.6
        Required gap between positive and negative scores.
    power : float, default=2.0
        Exponent of the hinge.

    Returns
    -------
    torch.Tensor
        Scalar tensor.
    """
    scores = scores.reshape(-1)
    positive = targets.reshape(-1) > 0.5
    pairs = positive[:, None] & ~positive[None, :]  # rows: positives, columns: negatives
    hinge = (margin - (scores[:, None] - scores[None, :])).clamp_min(0.0)
    hinge = hinge.square() if power == 2 else hinge.pow(power)
    pair_losses = torch.where(pairs, hinge, torch.zeros((), dtype=hinge.dtype, device=hinge.device))
    return pair_losses.sum() / pairs.sum().clamp_min(1)


def cvar_auc_loss(logits, targets, alpha=0.8, gamma=0.5, margin=0.6, power=2.0):
    """The method's objective: ``gamma * CVaR(BCE) + (1 - gamma) * pairwise AUC``.

    Parameters
    ----------
    logits : torch.Tensor of shape (n,)
        Raw model outputs.
    targets : torch.Tensor of shape (n,)
        Binary targets, 1 for generated images.
    alpha : float in (0, 1], default=0.8
        CVaR level, see :func:`cvar_loss`.
    gamma : float in [0, 1], default=0.5
        Weight of the CVaR term.
    margin, power : float
        Parameters of :func:`pairwise_auc_loss`.

    Returns
    -------
    torch.Tensor
        Scalar tensor.
    """
    logits = logits.reshape(-1)
    targets = targets.reshape(-1).to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return gamma * cvar_loss(bce, alpha) + (1.0 - gamma) * pairwise_auc_loss(
        logits, targets, margin, power
    )


class DetectorLoss(nn.Module):
    """Criterion module selecting one of the objectives by name.

    Parameters
    ----------
    loss : {"cvar_auc", "bce", "cvar", "auc"}, default="cvar_auc"
        ``"cvar_auc"`` is the method's objective (:func:`cvar_auc_loss`);
        ``"bce"`` the plain mean binary cross-entropy; ``"cvar"`` and ``"auc"``
        one term alone, for ablations.
    alpha, gamma, margin, power : float
        Parameters of the objectives, see :func:`cvar_auc_loss`.
    """

    def __init__(self, loss="cvar_auc", alpha=0.8, gamma=0.5, margin=0.6, power=2.0):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}.")
        self.loss = loss
        self.alpha = alpha
        self.gamma = gamma
        self.margin = margin
        self.power = power

    def forward(self, logits, targets):
        """The loss of a batch.

        Parameters
        ----------
        logits : torch.Tensor of shape (n_samples,) or (n_samples, 1)
            The network's outputs (log-odds of "generated").
        targets : torch.Tensor of shape (n_samples,) or (n_samples, 1)
            0 (real) or 1 (generated).

        Returns
        -------
        torch.Tensor
            The scalar loss chosen by ``loss``.
        """
        logits = logits.reshape(-1)
        targets = targets.reshape(-1).to(logits.dtype)
        if self.loss == "cvar_auc":
            return cvar_auc_loss(logits, targets, self.alpha, self.gamma, self.margin, self.power)
        if self.loss == "auc":
            return pairwise_auc_loss(logits, targets, self.margin, self.power)
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        return bce.mean() if self.loss == "bce" else cvar_loss(bce, self.alpha)
