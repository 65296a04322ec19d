"""`hf-srdistill push-dataset | push-model | reproduce`: plain-argument Hub commands.

Exit codes: 0 done / reproduced, 1 reproduced but different, 2 bad input or failed push.
"""

from __future__ import annotations

import argparse
import logging
import sys

from hf_srdistill.configio import ConfigError


def _push_parser(command: str, what: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"hf-srdistill {command}",
                                description=f"Upload a {what} folder to the Hugging Face Hub, with its card "
                                            f"refreshed. Token: HF_TOKEN or `hf auth login`.")
    p.add_argument("folder")
    p.add_argument("--repo-id", required=True, help="user/name on the Hub")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision", help="branch to push to (created if missing); default main")
    return p


def _reproduce_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hf-srdistill reproduce",
                                description="Re-run an artifact's recorded config and compare the result.",
                                epilog="Further --section.key=value flags override the recorded config "
                                       "(e.g. --train.train_set=user/set when the recorded path is gone).")
    p.add_argument("artifact", help="artifact folder (distilled set, trained model, eval table) or Hub repo id")
    p.add_argument("--output-dir", help="where the re-run writes (default: a new temp folder, kept)")
    p.add_argument("--repo-type", choices=["dataset", "model"], help="Hub repo type (default: try both)")
    p.add_argument("--test-root", help="local test-set folder, for re-measuring a model's metrics")
    p.add_argument("--psnr-tol", type=float, default=0.01, help="dB; for models whose weights differ")
    p.add_argument("--ssim-tol", type=float, default=1e-4)
    p.add_argument("--lpips-tol", type=float, default=1e-4)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not argv or argv[0] not in ("push-dataset", "push-model", "reproduce"):
        print("usage: hf-srdistill push-dataset|push-model|reproduce ...", file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "reproduce":
        return _reproduce(rest)
    from hf_srdistill.hub.folders import FolderError
    from hf_srdistill.hub.push import HubPushError, push_dataset, push_model

    parser = _push_parser(command, "distilled-set" if command == "push-dataset" else "trained-model")
    if command == "push-model":
        parser.add_argument("--dataset-repo-id", help="Hub repo of the set it was trained on, for the card")
    args = parser.parse_args(rest)
    try:
        if command == "push-dataset":
            url = push_dataset(args.folder, args.repo_id, private=args.private, revision=args.revision)
        else:
            url = push_model(args.folder, args.repo_id, private=args.private, revision=args.revision,
                             dataset_repo_id=args.dataset_repo_id)
    except (FolderError, HubPushError, FileNotFoundError, ValueError) as err:
        print(f"hf-srdistill {command}: {err}", file=sys.stderr)
        return 2
    print(f"pushed {args.folder} -> {url}")
    return 0


def _reproduce(rest: list[str]) -> int:
    from hf_srdistill.hub.folders import FolderError
    from hf_srdistill.hub.reproduce import Tolerance, reproduce

    args, overrides = _reproduce_parser().parse_known_args(rest)
    bad = [o for o in overrides if not (o.startswith("--") and "=" in o)]
    if bad:
        print(f"hf-srdistill reproduce: unrecognised arguments {bad} (overrides look like "
              f"--section.key=value)", file=sys.stderr)
        return 2
    try:
        verdict = reproduce(args.artifact, args.output_dir, overrides, args.repo_type,
                            Tolerance(args.psnr_tol, args.ssim_tol, args.lpips_tol), args.test_root)
    except (FolderError, ConfigError, FileNotFoundError, ValueError) as err:
        print(f"hf-srdistill reproduce: {err}", file=sys.stderr)
        return 2
    print(verdict.report())
    return 0 if verdict.match else 1
