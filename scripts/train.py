"""Thin wrapper: `python scripts/train.py --config configs/... [--section.key=value ...]`.

Same as `hf-srdistill train`; works under `accelerate launch`.
"""

import sys

from hf_srdistill.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
