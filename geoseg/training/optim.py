"""Optimizer parameter groups: a lower learning rate for the pretrained backbone, no weight decay
on norms and biases (as in the UNetFormer paper's AdamW set-up)."""

from torch import nn


def param_groups(
    net: nn.Module, *, lr: float, backbone_lr: float, weight_decay: float
) -> list[dict]:
    """Split ``net``'s trainable parameters into backbone/decoder x decay/no-decay groups."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in net.named_parameters():
        if not param.requires_grad:
            continue
        is_backbone = name.startswith("backbone.")
        decays = param.ndim > 1  # weights of convs/linears; norms, biases and scalars are 1-d
        groups.setdefault((is_backbone, decays), []).append(param)
    return [
        {
            "params": params,
            "lr": backbone_lr if is_backbone else lr,
            "weight_decay": weight_decay if decays else 0.0,
        }
        for (is_backbone, decays), params in groups.items()
    ]
