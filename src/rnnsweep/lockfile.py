"""`make lock`'s last step: take torch out of requirements.lock.

pip-compile pins torch with the hash of the one build this machine resolved (a CPU-only
`+cpu` build here, which the default index does not serve), so the lock would install only
where that build is. `make setup` installs torch first from requirements-torch.txt; pip's
hash-checking mode accepts a dependency that is already installed, so the rest of the lock
stays exact and hash-checked.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

UNLOCKED = "torch"
NOTE = ("# torch: installed first from requirements-torch.txt (one build per machine, no hashes)"
        "\n")


def without_package(text: str, name: str = UNLOCKED) -> str:
    """The lock's text less the block of `name` (its pin, hashes and "via" comments)."""
    block = re.compile(rf"^{re.escape(name)}==\S+(?: \\\n(?:    .*\n)*?(?=\S)|\n)", re.M)
    out, n = block.subn(NOTE, text)
    if n == 0 and NOTE not in text:
        raise SystemExit(f"requirements.lock: no {name}== pin found to take out")
    return out


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "requirements.lock")
    path.write_text(without_package(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
