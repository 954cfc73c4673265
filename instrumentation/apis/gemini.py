"""(being written)"""

from __future__ import annotations

from .base import Endpoint

ENDPOINTS: tuple[Endpoint, ...] = ()
