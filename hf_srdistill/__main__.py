"""`python -m hf_srdistill ...` is `hf-srdistill ...`."""

from hf_srdistill.cli import main

raise SystemExit(main())
