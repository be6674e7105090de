"""Flags shared by the verbs that run a trained model (evaluate, predict)."""

from __future__ import annotations


def add_model_input_args(p) -> None:
    p.add_argument("--image-column", help="image column of the table (default: the run's data.image_column)")
    p.add_argument("--root", help="folder the table's image paths are relative to (default: the table's folder)")
    p.add_argument("--batch-size", type=int, default=128, help="images per forward pass (default: 128)")
    p.add_argument("--num-workers", type=int, default=1, help="DataLoader workers decoding images")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def input_kwargs(args) -> dict:
    return {"image_column": args.image_column, "root": args.root, "batch_size": args.batch_size,
            "num_workers": args.num_workers}
