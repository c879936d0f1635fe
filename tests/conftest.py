"""Fast tests: no VM, no network; they run in seconds."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
