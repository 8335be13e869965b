"""Token positions: from "the k-th generated token" to indices into the model's full input sequence.

Stored positions count every token the model saw — visual tokens (image placeholders), prompt and generated
tokens — and exclude left padding, so a position means the same thing whatever batch the sample was in.

    "predicts": the position whose output logits predict the word's first sub-token (its index − 1); the last
                prompt position when the word is the first generated token. The reference code's choice.
    "at":       the position of the word's first sub-token itself.
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Int
from torch import Tensor

from lmm_concepts.errors import InputError

PositionRule = Literal["predicts", "at"]
POSITION_RULES: tuple[str, ...] = ("predicts", "at")


def check_position_rule(position: str) -> None:
    if position not in POSITION_RULES:
        raise InputError(f"position must be one of {POSITION_RULES}, got {position!r}")


def left_padding(attention_mask: Int[Tensor, "batch seq"], prompt_length: int) -> Int[Tensor, " batch"]:
    """Number of left-pad tokens in each row: prompt positions whose mask is 0."""
    return prompt_length - attention_mask[:, :prompt_length].to(torch.long).sum(dim=1)


def sequence_position(generated_index: int, prompt_length: int, n_left_pad: int, position: str) -> int:
    """Index into the unpadded full sequence for the generated token `generated_index` under the rule `position`."""
    check_position_rule(position)
    at = prompt_length + generated_index - n_left_pad
    return at - 1 if position == "predicts" else at
