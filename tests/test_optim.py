import pytest
import torch
from torch import nn

from sklearn_clipdet.optim import SAM, frozen_batchnorm_stats


def test_one_step_on_a_quadratic_matches_hand_computation():
    A = torch.tensor([[3.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    w0 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    w = nn.Parameter(w0.clone())
    rho, lr = 0.1, 0.05
    opt = SAM([w], torch.optim.SGD, rho=rho, lr=lr)

    def closure():
        opt.zero_grad()
        loss = 0.5 * w @ A @ w
        loss.backward()
        return loss

    loss = opt.step(closure)

    g = A @ w0
    perturbed = w0 + rho * g / g.norm()
    expected = w0 - lr * (A @ perturbed)
    torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-10)
    assert loss.item() == pytest.approx((0.5 * w0 @ A @ w0).item())


def test_adaptive_step_scales_by_weight_magnitude():
    A = torch.eye(2, dtype=torch.float64)
    w0 = torch.tensor([2.0, -0.5], dtype=torch.float64)
    w = nn.Parameter(w0.clone())
    opt = SAM([w], torch.optim.SGD, rho=0.2, adaptive=True, lr=0.1)

    def closure():
        opt.zero_grad()
        loss = 0.5 * w @ A @ w
        loss.backward()
        return loss

    opt.step(closure)
    g = w0
    e = 0.2 * w0.square() * g / (w0.abs() * g).norm()
    torch.testing.assert_close(w.detach(), w0 - 0.1 * (w0 + e), rtol=0, atol=1e-10)


def test_step_requires_a_closure():
    opt = SAM([nn.Parameter(torch.ones(2))], torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="closure"):
        opt.step()


def test_second_pass_flag_and_state_dict_round_trip():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = SAM(model.parameters(), torch.optim.AdamW, lr=1e-2, weight_decay=0.01)
    flags = []

    def closure():
        flags.append(opt.second_pass)
        opt.zero_grad()
        loss = model(torch.ones(4, 3)).pow(2).mean()
        loss.backward()
        return loss

    opt.step(closure)
    assert flags == [False, True] and opt.second_pass is False

    state = opt.state_dict()
    assert state["state"], "the base optimiser's moments must be saved"
    other = SAM(model.parameters(), torch.optim.AdamW, lr=1.0)
    other.load_state_dict(state)
    assert other.param_groups[0]["lr"] == 1e-2
    assert other.base_optimizer.param_groups is other.param_groups


def test_batchnorm_statistics_unchanged_by_second_pass():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    model.train()
    X, y = torch.randn(16, 4), torch.randn(16, 1)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.5, lr=0.1)
    bn = model[1]
    stats = {}

    def closure():
        opt.zero_grad()
        if opt.second_pass:
            with frozen_batchnorm_stats(model):
                loss = nn.functional.mse_loss(model(X), y)
        else:
            loss = nn.functional.mse_loss(model(X), y)
            stats["after_first"] = (bn.running_mean.clone(), bn.running_var.clone())
        loss.backward()
        return loss

    opt.step(closure)
    torch.testing.assert_close(bn.running_mean, stats["after_first"][0], rtol=0, atol=0)
    torch.testing.assert_close(bn.running_var, stats["after_first"][1], rtol=0, atol=0)
    assert bn.num_batches_tracked.item() == 1


def test_frozen_batchnorm_stats_still_normalises_with_batch_statistics():
    bn = nn.BatchNorm1d(3).train()
    x = torch.randn(10, 3) * 5 + 2
    with frozen_batchnorm_stats(bn):
        out = bn(x)
    torch.testing.assert_close(out.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    assert torch.equal(bn.running_mean, torch.zeros(3))


def test_rejects_negative_rho():
    with pytest.raises(ValueError, match="rho"):
        SAM([nn.Parameter(torch.ones(1))], torch.optim.SGD, rho=-1.0, lr=0.1)
