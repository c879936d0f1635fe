"""``python -m mlflow_vm``: see cli.py."""

import sys

from .cli import main

sys.exit(main())
