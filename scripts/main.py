"""Thin wrapper: `python scripts/main.py --config configs/... [--section.key=value ...]`.

Same as `hf-srdistill main`; works under `accelerate launch`.
"""

import sys

from hf_srdistill.cli import main

if __name__ == "__main__":
    sys.exit(main(["main", *sys.argv[1:]]))
