"""`gtok train` and `gtok embed` (argument definitions; the work happens in gtok.train / gtok.embed)."""

from __future__ import annotations

COMMANDS: list = []
