"""Thin wrapper: `python scripts/distill.py --config configs/distill_mini.yaml [--distill.ipc=10 ...]`.

Runs under `accelerate launch` as well; classes are then sharded across processes
(on a machine without CUDA the processes form a gloo group on the CPU).
"""

import os
import sys

from hf_srdistill.cli import parse_config
from hf_srdistill.distill import distill

if __name__ == "__main__":
    folder = distill(parse_config("distill", sys.argv[1:]))
    if int(os.environ.get("RANK", "0")) == 0:
        print(folder)
