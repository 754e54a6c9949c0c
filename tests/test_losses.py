import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from sklearn_clipdet.losses import DetectorLoss, cvar_auc_loss, cvar_loss, pairwise_auc_loss


def _cvar_objective(lam, losses, alpha):
    return lam + np.maximum(losses - lam, 0.0).mean() / alpha


@pytest.mark.parametrize("alpha", [1.0, 0.8, 0.5, 0.3, 0.05, 0.01])
@pytest.mark.parametrize("n", [1, 7, 64, 257])
def test_cvar_equals_its_variational_definition(alpha, n):
    rng = np.random.default_rng(n)
    losses = rng.exponential(size=n)
    closed_form = cvar_loss(torch.tensor(losses), alpha).item()

    # The objective is piecewise linear and convex in lambda with kinks at the
    # losses, so its minimum over lambda is attained at one of them.
    brute_force = min(_cvar_objective(lam, losses, alpha) for lam in losses)
    bounded = minimize_scalar(
        _cvar_objective, bounds=(losses.min(), losses.max()), args=(losses, alpha),
        method="bounded", options={"xatol": 1e-12},
    )
    assert closed_form == pytest.approx(brute_force, rel=1e-12)
    assert closed_form == pytest.approx(bounded.fun, rel=1e-6)


def test_cvar_limits():
    losses = torch.tensor([0.1, 3.0, 0.5, 2.0])
    assert cvar_loss(losses, 1.0).item() == pytest.approx(losses.mean().item())
    assert cvar_loss(losses, 0.01).item() == pytest.approx(3.0)
    # alpha * n = 2: the mean of the two worst.
    assert cvar_loss(losses, 0.5).item() == pytest.approx(2.5)
    # alpha * n = 1.5: the worst, plus half of the second worst, over 1.5.
    assert cvar_loss(losses, 0.375).item() == pytest.approx((3.0 + 0.5 * 2.0) / 1.5)


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5])
def test_cvar_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        cvar_loss(torch.ones(3), alpha)


@pytest.mark.parametrize("margin,power", [(0.6, 2.0), (1.0, 1.0), (0.2, 3.0)])
def test_pairwise_auc_matches_double_loop(margin, power):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=40)
    targets = rng.integers(0, 2, size=40)
    expected = np.mean(
        [
            max(0.0, margin - (scores[p] - scores[n])) ** power
            for p, n in itertools.product(range(40), range(40))
            if targets[p] == 1 and targets[n] == 0
        ]
    )
    value = pairwise_auc_loss(torch.tensor(scores), torch.tensor(targets), margin, power)
    assert value.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("label", [0.0, 1.0])
def test_pairwise_auc_one_class_batch_is_zero_not_nan(label):
    scores = torch.randn(8, requires_grad=True)
    value = pairwise_auc_loss(scores, torch.full((8,), label))
    assert value.item() == 0.0
    value.backward()
    assert torch.isfinite(scores.grad).all()


def test_combined_loss_is_weighted_sum():
    torch.manual_seed(0)
    logits, targets = torch.randn(50), torch.randint(0, 2, (50,)).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    expected = 0.3 * cvar_loss(bce, 0.7) + 0.7 * pairwise_auc_loss(logits, targets, 0.5, 2.0)
    value = cvar_auc_loss(logits, targets, alpha=0.7, gamma=0.3, margin=0.5, power=2.0)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)


def test_gradcheck_float64():
    torch.manual_seed(0)
    # Distinct, well-separated values keep the sort and the hinges away from ties.
    logits = (torch.randperm(12).double() * 0.37 - 2.0).requires_grad_()
    targets = torch.tensor([0, 1] * 6, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda s: cvar_auc_loss(s, targets, alpha=0.6, gamma=0.4, margin=0.6, power=2.0),
        (logits,),
    )
    assert torch.autograd.gradcheck(lambda s: cvar_loss(s, 0.45), (logits,))


@pytest.mark.parametrize("name", ["cvar_auc", "bce", "cvar", "auc"])
def test_detector_loss_dispatches(name):
    torch.manual_seed(1)
    logits, targets = torch.randn(30), torch.randint(0, 2, (30,)).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    expected = {
        "cvar_auc": cvar_auc_loss(logits, targets, 0.8, 0.5, 0.6, 2.0),
        "bce": bce.mean(),
        "cvar": cvar_loss(bce, 0.8),
        "auc": pairwise_auc_loss(logits, targets, 0.6, 2.0),
    }[name]
    assert DetectorLoss(name)(logits, targets).item() == pytest.approx(expected.item())


def test_detector_loss_rejects_unknown_name():
    with pytest.raises(ValueError, match="loss must be one of"):
        DetectorLoss("hinge")


def test_losses_stay_on_input_dtype_and_device():
    logits = torch.randn(16, dtype=torch.float64)
    targets = torch.randint(0, 2, (16,))
    value = cvar_auc_loss(logits, targets)
    assert value.dtype == torch.float64 and value.device == logits.device
