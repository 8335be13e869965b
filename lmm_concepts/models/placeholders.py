"""Which image-placeholder ids take an image's visual tokens, and which are ordinary tokens.

A prompt holds one placeholder id per visual token. A model can also *generate* its placeholder id mid-caption;
Hugging Face `generate` then embeds it as an ordinary token (the image tensors only reach the first step), so
the same sequence run again as a whole must do the same. The rule, shared by every backend: in each row, the
first `k` placeholders (k = the visual tokens of that row's image: the prompt's) take the image; any later one
is an ordinary token.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Int
from torch import Tensor


def image_positions(input_ids: Int[Tensor, "batch pos"], image_token_id: int,
                    per_row: int | Int[Tensor, " batch"]) -> Bool[Tensor, "batch pos"]:
    """True at the placeholders that take visual tokens: the first `per_row` placeholders of each row.

    Raises when a row holds fewer placeholders than its image needs (the prompt lost some)."""
    is_placeholder = input_ids == image_token_id
    counts = torch.as_tensor(per_row, device=input_ids.device).expand(input_ids.shape[0])
    found = is_placeholder.sum(dim=1)
    short = (found < counts).nonzero().flatten().tolist()
    if short:
        row = short[0]
        raise ValueError(f"row {row} holds {int(found[row])} image placeholders (id {image_token_id}) but its image "
                         f"needs {int(counts[row])}; build the inputs with build_inputs() / generate(), which "
                         "expand the image marker to one placeholder per visual token")
    return is_placeholder & (is_placeholder.cumsum(dim=1) <= counts[:, None])
