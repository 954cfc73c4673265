"""(being written)"""

from __future__ import annotations

from .fake_api import FakeAPI

API = FakeAPI("openai_media", (), lambda status, message: ({"message": message or f"HTTP {status}"}, {}))
