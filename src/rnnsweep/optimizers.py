"""Optimisers torch does not ship under the parametrisation a published protocol uses."""

from __future__ import annotations

from collections.abc import Iterable

import torch


class RescaledMomentumSGD(torch.optim.SGD):
    """SGD with Nesterov momentum whose step size is lr * (1 - momentum), as Greff et al. 2017
    train: the momentum's 1 / (1 - momentum) amplification is divided out, so a searched
    learning rate means the same step size at every sampled momentum.

    Plain torch.optim.SGD underneath (its `dampening` would differ on the first step, which
    torch leaves undamped); the logged `lr` is the protocol's, the groups' lr the product."""

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], lr: float = 1e-2,
                 momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = True) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum={momentum} must be in [0, 1)")
        super().__init__(params, lr=lr * (1.0 - momentum), momentum=momentum,
                         weight_decay=weight_decay, nesterov=nesterov and momentum > 0)
