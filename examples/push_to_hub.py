"""Publish a hierarchical-vl checkpoint on the Hugging Face Hub, with a generated model card.

The model (whichever class saved the checkpoint: a task head, the multi-task model or the encoder), its processor and
tokenizer, and a ``README.md`` model card are saved into ``--save-dir`` (a temporary folder by default) and uploaded
in one commit. The card's metadata and sections come from ``--card-data`` (a JSON file with the fields of
``hierarchical_vl.hub.MODEL_CARD_FIELDS``) and ``--results`` (a JSON file ``{task: {metric: value}}`` or a list of
rows, e.g. written by an evaluation script).

Examples::

    python examples/push_to_hub.py --checkpoint outputs/vqa --repo-id me/hvl-vqa --private \\
        --card-data card.json --results outputs/vqa/eval_results.json
    python examples/push_to_hub.py --checkpoint outputs/vqa --repo-id me/hvl-vqa --save-dir publish --dry-run

The token comes from ``--token``, ``HF_TOKEN`` or ``hf auth login``. If the upload fails, the error names the folder
that holds the complete save.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hierarchical_vl.hub import HubPushError, push_to_hub, save_for_hub
from hierarchical_vl.loading import load_checkpoint, load_processor


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder (model, processor, tokenizer)")
    parser.add_argument("--repo-id", required=True, help="user/name or organisation/name")
    parser.add_argument("--save-dir", type=Path, help="folder for the local save (kept); temporary by default")
    parser.add_argument("--card-data", type=Path, help="JSON file with model card fields")
    parser.add_argument("--results", type=Path, help="JSON file with evaluation results for the card")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--token", help="Hub token (HF_TOKEN or the logged-in token by default)")
    parser.add_argument("--endpoint", help="Hub address (https://huggingface.co by default)")
    parser.add_argument("--revision", help="branch to commit to")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument("--commit-message", help="message of the commit")
    parser.add_argument("--dry-run", action="store_true", help="only write the local save and the model card")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    card_data = json.loads(args.card_data.read_text()) if args.card_data else {}
    if args.results:
        card_data["results"] = json.loads(args.results.read_text())
    model = load_checkpoint(args.checkpoint)
    processor = load_processor(args.checkpoint, model.config)

    if args.dry_run:
        save_dir = args.save_dir or Path(args.checkpoint).with_name(Path(args.checkpoint).name + "-hub")
        written = save_for_hub(model, processor, save_dir, card_data, repo_id=args.repo_id)
        print(f"Saved {len(written)} files for {args.repo_id} in {save_dir} (not uploaded): {', '.join(written)}")
        return 0
    try:
        info = push_to_hub(
            model,
            processor,
            args.repo_id,
            save_directory=args.save_dir,
            card_data=card_data,
            private=args.private or None,
            token=args.token,
            revision=args.revision,
            commit_message=args.commit_message,
            create_pr=args.create_pr,
            endpoint=args.endpoint,
        )
    except HubPushError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"Pushed {type(model).__name__} to {args.repo_id}: {info.pr_url or info.commit_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
