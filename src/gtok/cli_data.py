"""`gtok manifest` and `gtok verify` (argument definitions; the work happens in gtok.manifest)."""

from __future__ import annotations

COMMANDS: list = []
