"""Thin wrapper: `python scripts/evaluate.py --config configs/... [--section.key=value ...]`.

Same as `hf-srdistill evaluate`; works under `accelerate launch`.
"""

import sys

from hf_srdistill.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
