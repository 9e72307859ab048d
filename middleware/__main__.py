"""``python -m seawall``: the ``seawall`` command."""

from __future__ import annotations

import sys

from seawall.cli import main

if __name__ == "__main__":
    sys.exit(main())
