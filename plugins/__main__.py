"""``python -m seawall.plugins [--all] [--hook NAME]``: the registered plugins as JSON.

Without ``--all`` only plugins from outside seawall are listed (entry points),
as ``llm plugins`` does; ``--all`` adds the built-ins.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from seawall.plugins.manager import PluginError, make_manager


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seawall.plugins")
    parser.add_argument("--all", action="store_true", help="include the built-in plugins")
    parser.add_argument("--hook", metavar="NAME", help="only plugins implementing NAME")
    args = parser.parse_args(argv)
    try:
        infos = make_manager().list_plugins(include_builtin=args.all)
    except PluginError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    found = [i.as_dict() for i in infos if args.hook is None or args.hook in i.hooks]
    sys.stdout.write(json.dumps(found, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
