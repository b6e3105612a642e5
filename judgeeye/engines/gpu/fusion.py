"""Fused projections for GPU decode: q/k/v and gate/up linears as one matmul each (one kernel
instead of two or three per layer and step). Results are unchanged: the same weights,
concatenated."""

from __future__ import annotations

from typing import Any


def _fused_classes() -> tuple[type, type]:
    """(FusedLinear, LinearPart), defined lazily so that importing this module needs no torch."""
    global _FUSED_CLASSES
    if _FUSED_CLASSES is not None:
        return _FUSED_CLASSES
    import torch
    from torch import nn

    class FusedLinear(nn.Module):
        """Several nn.Linear with one input, as one matmul (one kernel instead of 2-3)."""

        def __init__(self, linears: list[Any]) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.cat([m.weight.data for m in linears]),
                                       requires_grad=False)
            self.bias: nn.Parameter | None = (
                nn.Parameter(torch.cat([m.bias.data for m in linears]), requires_grad=False)
                if linears[0].bias is not None else None)
            bounds, start = [], 0
            for m in linears:
                bounds.append((start, start + m.out_features))
                start += m.out_features
            self.bounds = bounds
            self.stash: tuple[Any, Any] | None = None

        def forward(self, x: Any) -> Any:
            return torch.nn.functional.linear(x, self.weight, self.bias)

    class LinearPart(nn.Module):
        """Stands in for one of the fused linears: the first part computes the fused product
        and the others slice it, when called on the same input (else they compute their own
        slice of the weight, so any call order stays correct)."""

        def __init__(self, fused: Any, index: int, in_features: int) -> None:
            super().__init__()
            self._fused = (fused,)  # not a submodule: the owner registers it once
            self.index = index
            self.in_features = in_features
            self.out_features = fused.bounds[index][1] - fused.bounds[index][0]

        def forward(self, x: Any) -> Any:
            fused = self._fused[0]
            a, b = fused.bounds[self.index]
            if self.index == 0:
                y = fused(x)
                fused.stash = (x, y)
                return y[..., a:b]
            stash = fused.stash
            if stash is not None and stash[0] is x:
                if self.index == len(fused.bounds) - 1:
                    fused.stash = None
                return stash[1][..., a:b]
            bias = fused.bias[a:b] if fused.bias is not None else None
            return torch.nn.functional.linear(x, fused.weight[a:b], bias)

    _FUSED_CLASSES = (FusedLinear, LinearPart)
    return _FUSED_CLASSES


_FUSED_CLASSES: tuple[type, type] | None = None

#: groups of sibling linears that read the same input (Llama/Qwen/Mistral-style blocks)
_FUSE_GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def fuse_projections(model: Any) -> int:
    """Replace q/k/v and gate/up projections by one matmul each, in place; returns how many
    groups were fused. Results are unchanged (same weights, concatenated)."""
    from torch import nn

    fused_cls, part_cls = _fused_classes()
    count = 0
    for module in list(model.modules()):
        for names in _FUSE_GROUPS:
            linears = [m for m in (getattr(module, n, None) for n in names) if type(m) is nn.Linear]
            if len(linears) != len(names):
                continue
            first = linears[0]
            if any(m.in_features != first.in_features or (m.bias is None) != (first.bias is None)
                   or m.weight.dtype != first.weight.dtype or m.weight.device != first.weight.device
                   for m in linears):
                continue
            fused = fused_cls(linears)
            setattr(module, "_".join(n.split("_")[0] for n in names) + "_fused", fused)
            for i, n in enumerate(names):
                setattr(module, n, part_cls(fused, i, first.in_features))
            count += 1
    return count


__all__ = ["fuse_projections"]
