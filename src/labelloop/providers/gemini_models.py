"""Gemini models on Vertex AI: the default model, the price table and cost estimates.

Kept apart from the labeler so that a price or a model change touches one small file.
"""

from __future__ import annotations

import math

# The default model: Gemini 3.7 Flash (released 2026-08-13, on Vertex AI). gemini-2.5-flash was
# retired on 2026-06-17 and the 2.0 models on 2026-06-01 (Vertex AI model versions page).
DEFAULT_MODEL = "gemini-3.7-flash"


# USD per million tokens (input, output) on Vertex AI, standard tier, prompts under 200k tokens,
# thinking tokens billed as output; checked 2026-11. Images count as input tokens (258 per image
# up to 384 px a side). The longest matching prefix wins; a model not here gets a warning and an
# explicit "cost unknown". Update the table when prices change.
PRICES: dict[str, tuple[float, float]] = {
    # Launch price until 2027-12-31; the standard price after that is 1.50 / 7.50.
    "gemini-3.7-flash": (0.75, 3.75),
    "gemini-3.5-flash": (1.50, 9.00),
    "gemini-3-flash": (0.50, 3.00),  # gemini-3-flash-preview
    # Retired models, kept so old runs' reports still price.
    "gemini-2.5-pro": (1.25, 10.00),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-flash-lite": (0.10, 0.40),
}
IMAGE_TOKENS = 258


def price_for(model: str) -> tuple[float, float]:
    """(input, output) USD per million tokens; the longest matching table prefix wins (NaN for
    a model the table does not know)."""
    matches = [name for name in PRICES if model.rsplit("/", 1)[-1].startswith(name)]
    if not matches:
        return (float("nan"), float("nan"))
    return PRICES[max(matches, key=len)]


def token_cost(model: str, *, prompt_tokens: int, output_tokens: int) -> float:
    """USD for these tokens at `model`'s price (NaN for a model the table does not know)."""
    p_in, p_out = price_for(model)
    return (prompt_tokens * p_in + output_tokens * p_out) / 1e6


def has_price(model: str) -> bool:
    """Whether `PRICES` knows the model (else its cost is reported as unknown)."""
    return not math.isnan(price_for(model)[0])


def estimate_cost(
    model: str, *, items: int, is_image: bool, mean_text_chars: float = 400.0, samples: int = 1
) -> float:
    """A cost estimate before a run (USD): about 4 characters per text token, 258 per image,
    a ~150-token prompt and a few output tokens per sample."""
    p_in, p_out = price_for(model)
    per_item_in = 150 + (IMAGE_TOKENS if is_image else mean_text_chars / 4.0)
    return items * (per_item_in * p_in + 4 * samples * p_out) / 1e6
