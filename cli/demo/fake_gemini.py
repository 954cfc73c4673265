"""(being written)"""

from __future__ import annotations

from .fake_api import FakeAPI

API = FakeAPI("gemini", (), lambda status, message: ({"message": message or f"HTTP {status}"}, {}))
