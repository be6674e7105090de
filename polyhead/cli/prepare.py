"""polyhead prepare DATASET [ROOT] OUT"""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("prepare", help="write a ready-to-train dataset (images + label tables)",
                       description="Write a dataset as image files plus train/test label tables. "
                                   "fashion-mnist (28x28, one item) and multifashion (36x36, two items; "
                                   "Lin et al. 2019) read the Fashion-MNIST IDX files from --source, from "
                                   "Debian's dataset-fashion-mnist package, or download them with --download. "
                                   "deepfashion-attributes (DeepFashion Attribute Prediction, Liu et al. 2016) "
                                   "reads the release you obtained from its owners, in ROOT, into one table with "
                                   "a split column and a config (README, Command line).")
    p.add_argument("dataset", help="dataset name: fashion-mnist, multifashion, deepfashion-attributes")
    p.add_argument("root", nargs="?", metavar="ROOT",
                   help="deepfashion-attributes: the release's folder (Anno/, Eval/, img/); same as --source")
    p.add_argument("out", help="output folder")
    p.add_argument("--source", help="folder holding the dataset's raw files")
    p.add_argument("--download", action="store_true", help="download the raw files if they are not found (online)")
    p.add_argument("--missing-fraction", type=float, default=0.0,
                   help="blank this share of the training labels of the secondary tasks (partial labels demo)")
    p.add_argument("--limit", type=int, help="write only the first N images per split")
    p.add_argument("--seed", type=int, default=0, help="seed for random choices (blanked labels, multifashion pairs)")
    p.add_argument("--crop-bbox", action="store_true",
                   help="deepfashion-attributes: write each image cut to its bounding box (Anno/list_bbox.txt)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from polyhead.data.preparers import get_preparer

    from polyhead.errors import DataError

    prepare = get_preparer(args.dataset)
    if args.root and args.source and Path(args.root) != Path(args.source):
        raise DataError(f"give the dataset's folder once: ROOT '{args.root}' or --source '{args.source}'")
    source = args.root or args.source
    extra = {}
    if args.crop_bbox:
        if args.dataset != "deepfashion-attributes":
            raise DataError(f"--crop-bbox is for deepfashion-attributes, not {args.dataset}")
        extra["crop_bbox"] = True
    summary = prepare(Path(args.out), source=Path(source) if source else None, download=args.download,
                      missing_fraction=args.missing_fraction, seed=args.seed, limit=args.limit, **extra)
    for split, info in summary["splits"].items():
        print(f"{split}: {info['rows']} rows -> {info['table']}")
    if (Path(summary["out"]) / "config.yaml").is_file():
        print(f"config: {Path(summary['out']) / 'config.yaml'}")
    print(f"prepared {args.dataset} in {summary['out']} ({summary['seconds']} s, source: {summary['source']})")
    return 0
