"""Token prices per model, for cost accounting.

The defaults are list prices (USD per 1M tokens, prompts up to 200k tokens) of
Vertex AI online prediction; batch prediction costs :data:`BATCH_DISCOUNT` of them.
Prices change: pass ``prices=`` to a client (a :class:`Prices`, or a table that is
merged over the defaults) for the numbers that apply to your account. Models not in
the table (self-hosted ones behind an OpenAI-compatible server) cost 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class Prices:
    """USD per 1M input (prompt) and output tokens."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0

    def cost(self, prompt_tokens: int, output_tokens: int) -> float:
        """The cost in USD of the given token counts."""
        return (
            prompt_tokens * self.input_per_million + output_tokens * self.output_per_million
        ) / 1e6

    def scaled(self, factor: float) -> Prices:
        """These prices times ``factor`` (e.g. :data:`BATCH_DISCOUNT`)."""
        return Prices(self.input_per_million * factor, self.output_per_million * factor)


# Keys are model-name prefixes; the longest matching prefix wins, so "gemini-2.0-flash-001"
# costs what "gemini-2.0-flash" does and "gemini-2.0-flash-lite" keeps its own entry.
DEFAULT_PRICES: Mapping[str, Prices] = {
    "gemini-2.5-pro": Prices(1.25, 10.00),
    "gemini-2.5-flash": Prices(0.30, 2.50),
    "gemini-2.5-flash-lite": Prices(0.10, 0.40),
    "gemini-2.0-flash": Prices(0.15, 0.60),
    "gemini-2.0-flash-lite": Prices(0.075, 0.30),
}

BATCH_DISCOUNT = 0.5


def prices_for(model_id: str, prices: Prices | Mapping[str, Prices] | None = None) -> Prices:
    """The prices of ``model_id``.

    Args:
      model_id: the model's name, possibly with a ``publishers/google/models/`` prefix.
      prices: a :class:`Prices` (used as is), or a table merged over
        :data:`DEFAULT_PRICES`, or None (the defaults).
    """
    if isinstance(prices, Prices):
        return prices
    table = {**DEFAULT_PRICES, **(prices or {})}
    name = model_id.rsplit("/", 1)[-1]
    matches = [prefix for prefix in table if name.startswith(prefix)]
    return table[max(matches, key=len)] if matches else Prices()
