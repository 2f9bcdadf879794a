"""Adam's fused update without the per-step bookkeeping of ``torch.optim.Optimizer.step``.

A full-graph epoch of a small GAE takes about 2 ms, and ``Adam(fused=True).step()`` spends most of
its time in Python (grouping tensors by device, profiler labels, hooks, the state dictionary) around
one kernel call over a handful of weights. :class:`FusedAdam` makes that kernel call directly when
nothing else is needed: one parameter group of CPU or CUDA floating-point weights that all have a
gradient, no closure, no AMSGrad, no gradient scaling (step hooks run as for any optimiser). The kernel
and its arguments are the ones ``torch.optim.Adam(fused=True)`` passes, so the weights and the optimiser's state are the
same, bit for bit (tested); any other case, and a torch without the kernel, takes ``Adam.step``.
"""
from __future__ import annotations

import torch
from torch import Tensor


class FusedAdam(torch.optim.Adam):
    """``torch.optim.Adam(params, fused=True, ...)`` with a shorter path to the same kernel."""

    def __init__(self, params, **kwargs) -> None:
        super().__init__(params, fused=True, **kwargs)

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none:
            return super().zero_grad(set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    # Optimizer wraps this method, as every step, in its profiler label and step hooks.
    def step(self, closure=None):  # noqa: D102 (as Adam.step)
        lists = None if closure is not None else self._direct_lists()
        if lists is None:  # Adam's own step, without its hook wrapper (the hooks ran around this call)
            adam_step = torch.optim.Adam.step
            return (adam_step.__wrapped__ if getattr(adam_step, "hooked", False) else adam_step)(self, closure)
        group = self.param_groups[0]
        params, grads, exp_avgs, exp_avg_sqs, steps = lists
        beta1, beta2 = group["betas"]
        with torch.no_grad():  # as Adam.step: the weights are updated in place, outside autograd
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=group["lr"],
                               beta1=float(beta1), beta2=float(beta2), weight_decay=group["weight_decay"],
                               eps=group["eps"], maximize=False, grad_scale=None, found_inf=None)
        return None

    def _direct_lists(self) -> tuple[list[Tensor], ...] | None:
        """The kernel's argument lists, or ``None`` where ``Adam.step`` must run (first step included:
        it creates the state)."""
        if (len(self.param_groups) != 1 or not hasattr(torch, "_fused_adam_")
                or getattr(self, "grad_scale", None) is not None or getattr(self, "found_inf", None) is not None):
            return None
        group = self.param_groups[0]
        if (group["amsgrad"] or group["maximize"] or group["capturable"] or group["differentiable"]
                or group.get("decoupled_weight_decay") or not group["fused"] or torch.is_tensor(group["lr"])):
            return None
        params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        first = group["params"][0] if group["params"] else None
        for p in group["params"]:
            state = self.state.get(p)
            if p.grad is None or p.grad.is_sparse or not state or p.grad.dtype != p.dtype:
                return None
            if p.device != first.device or p.dtype != first.dtype:
                return None  # the kernel takes one device and dtype at a time
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        return (params, grads, exp_avgs, exp_avg_sqs, steps) if params else None
