"""Thin wrapper: `python scripts/reproduce.py --suite mini|div2k [--output-dir DIR] [--seeds ...]`.

Same as `hf-srdistill reproduce-study`: distil every experiment of configs/study/<suite>/,
build the equal-budget baselines, train SRCNN / VDSR / EDSR on every set, evaluate, and
write the tables (markdown + CSV) and figures. Rerunning skips finished runs.
"""

import sys

from hf_srdistill.study import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
