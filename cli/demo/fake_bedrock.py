"""(being written)"""

from __future__ import annotations

from .fake_api import FakeAPI

API = FakeAPI("bedrock", (), lambda status, message: ({"message": message or f"HTTP {status}"}, {}))
