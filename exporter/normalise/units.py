"""The billed units a record keeps besides its token fields (`Record.units`): genai-prices usage keys, and `images`.

They come from the `llmtally.usage.unit.<key>` attributes. The usage keys a record has a field for are read from
their own attributes (`FIELD_KEYS`, in the order of `price.rate.Usage`), never from units.
"""

from __future__ import annotations

from genai_prices.data_units import unit_data
from genai_prices.units import UnitRegistry

REGISTRY = UnitRegistry(unit_data)
ATTRIBUTE_PREFIX = "llmtally.usage.unit."
IMAGES = "images"  # generated images: no genai-prices unit, priced by a configured `per_image_usd` only
# genai-prices usage keys of the record's own fields: input incl. cache and audio, cache reads, cache writes incl.
# 1-hour, output incl. reasoning and audio, reasoning, 1-hour cache writes, input audio, output audio, web searches.
FIELD_KEYS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "output_reasoning_tokens",
    "cache_write_1h_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "web_searches",
)
REQUESTS = "requests"  # one per record, never reported
UNIT_KEYS = frozenset({*(k for k in REGISTRY.units if k not in FIELD_KEYS and k != REQUESTS), IMAGES})
# Seconds, which may be fractional; every other unit is a whole count.
DURATIONS = frozenset(k for k, u in REGISTRY.units.items() if u.dimensions.get("family") == "durations")
AUDIO_SECONDS = "audio_seconds"
INPUT_AUDIO_SECONDS = "input_audio_seconds"
AUDIO_SECONDS_PARTS = (INPUT_AUDIO_SECONDS, "output_audio_seconds")  # of audio_seconds, by direction
CHARACTERS = "input_characters"
