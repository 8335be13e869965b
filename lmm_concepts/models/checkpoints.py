"""Loading saved weights into a module, with an error that names every tensor that does not fit."""

from __future__ import annotations

from torch import Tensor, nn


def load_weights_checked(module: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """`load_state_dict` with an error naming every missing, unexpected or wrongly shaped tensor."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{source} does not fit {type(module).__name__}: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}, shape mismatches {wrong[:5]}; check that the checkpoint matches its config")
    module.load_state_dict(state)
