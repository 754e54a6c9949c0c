"""Sharpness-Aware Minimisation (Foret et al., 2021) as a torch optimiser."""

from contextlib import contextmanager

import torch
from torch.nn.modules.batchnorm import _BatchNorm


class SAM(torch.optim.Optimizer):
    """Sharpness-Aware Minimisation around any base optimiser.

    Each :meth:`step` evaluates the closure twice: once at the weights ``w``
    to get the gradient ``g``, once at ``w + rho * g / ||g||`` (the worst
    nearby point to first order); the base optimiser then steps from ``w``
    with the second gradient. Because ``step`` takes a closure, skorch's
    :meth:`~skorch.net.NeuralNet.train_step` drives it unchanged.

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups, as for any torch optimiser.
    base_optimizer : type
        A ``torch.optim.Optimizer`` subclass, e.g. ``torch.optim.AdamW``.
    rho : float, default=0.05
        Radius of the neighbourhood.
    adaptive : bool, default=False
        Scale the neighbourhood by the weights' magnitude (ASAM, Kwon et al., 2021).
    **base_kwargs
        Passed to ``base_optimizer`` (``lr``, ``weight_decay``, ...).

    Attributes
    ----------
    base_optimizer : torch.optim.Optimizer
        The wrapped optimiser; it shares this optimiser's ``param_groups``, so
        learning-rate schedulers act on both.
    second_pass : bool
        True while the closure runs at the perturbed weights. A training step
        reads it to leave BatchNorm running statistics alone in that pass (see
        :func:`frozen_batchnorm_stats`).
    """

    def __init__(self, params, base_optimizer, rho=0.05, adaptive=False, **base_kwargs):
        if rho < 0.0:
            raise ValueError(f"rho must be non-negative, got {rho!r}.")
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **base_kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        self.second_pass = False
        # Buffers reused at every step; not part of the state (state_dict, pickles).
        self._weights_before = {}
        self._perturbed = []

    @torch.no_grad()
    def _grad_norm(self):
        norms = [
            torch.linalg.vector_norm(p.grad * p.abs() if group["adaptive"] else p.grad)
            for group in self.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        if not norms:
            return None
        return torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms]))

    @torch.no_grad()
    def first_step(self):
        """Move the weights to ``w + e(w)``, remembering ``w``.

        ``w`` is copied into a buffer kept between steps, and ``e(w)`` is added in place
        with a tensor scale: no allocation per step and no device synchronisation.
        """
        grad_norm = self._grad_norm()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p not in self._weights_before:
                    self._weights_before[p] = torch.empty_like(p)
                self._weights_before[p].copy_(p)
                self._perturbed.append(p)
                scale = group["rho"] / (grad_norm.to(p.device) + 1e-12)
                direction = p.grad * p.square() if group["adaptive"] else p.grad
                p.addcmul_(direction, scale)

    @torch.no_grad()
    def second_step(self):
        """Restore ``w`` and step the base optimiser with the current gradient."""
        for p in self._perturbed:
            p.copy_(self._weights_before[p])
        self._perturbed.clear()
        self.base_optimizer.step()

    def step(self, closure=None):
        """One SAM update.

        Parameters
        ----------
        closure : callable
            Zeroes the gradients, computes the loss, calls ``backward`` and
            returns the loss. Required: SAM needs two gradient evaluations.

        Returns
        -------
        torch.Tensor
            The loss at the unperturbed weights.
        """
        if closure is None:
            raise ValueError("SAM.step needs a closure that recomputes the loss and gradients.")
        closure = torch.enable_grad()(closure)
        loss = closure()
        self.first_step()
        self.second_pass = True
        try:
            closure()
        finally:
            self.second_pass = False
        self.second_step()
        return loss

    def __getstate__(self):
        # torch.optim.Optimizer pickles defaults, state and param_groups only.
        return {**super().__getstate__(), "base_optimizer": self.base_optimizer}

    def __setstate__(self, state):
        super().__setstate__(state)  # param_groups is base_optimizer's list: pickle's memo
        self.second_pass = False
        self._weights_before = {}
        self._perturbed = []

    def state_dict(self):
        """The base optimiser's state (moments, steps); the groups also hold rho.

        Returns
        -------
        dict
            The base optimiser's ``state_dict()``, which :meth:`load_state_dict`
            takes back.
        """
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict):
        """Restore the base optimiser's state, as :meth:`state_dict` returned it.

        Parameters
        ----------
        state_dict : dict
            A state from :meth:`state_dict`; its parameter groups (``rho``
            included) replace this optimiser's.
        """
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups


@contextmanager
def frozen_batchnorm_stats(module):
    """Leave the running statistics of every BatchNorm layer in ``module`` unchanged.

    The layers still normalise with the batch statistics (training mode), but
    inside the context they update scratch copies of ``running_mean``,
    ``running_var`` and ``num_batches_tracked``; the originals are put back on
    exit, untouched. The originals are never written in place, so a backward
    pass may run inside or after the context. SAM's second pass runs under
    this context, so the statistics describe the weights that are kept.

    Parameters
    ----------
    module : torch.nn.Module
        The network whose BatchNorm layers (at any depth) keep their statistics.

    Yields
    ------
    None
        The context holds no value.
    """
    layers = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    originals = [dict(layer.named_buffers(recurse=False)) for layer in layers]
    for layer, buffers in zip(layers, originals):
        for name, buffer in buffers.items():
            setattr(layer, name, buffer.clone())
    try:
        yield
    finally:
        for layer, buffers in zip(layers, originals):
            for name, buffer in buffers.items():
                setattr(layer, name, buffer)
