"""polyhead predict RUN_DIR --images DIR|--table TABLE --out predictions.parquet [--backend torch|onnx]"""

from __future__ import annotations

from polyhead.cli.common import add_model_input_args, input_kwargs


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="predict every task for a folder of images or a table",
                       description="Writes one row per image: per multiclass task the label, its probability and "
                                   "the top-k; per binary task probability and label; per multilabel task the "
                                   "labels over threshold and every label's probability. Streams in batches.")
    p.add_argument("run_dir", help="run folder (or bundle folder) written by `polyhead train`")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder of images (searched recursively)")
    src.add_argument("--table", help="table with an image column")
    p.add_argument("--out", required=True, help="output .parquet or .csv")
    p.add_argument("--backend", default="torch", choices=("torch", "onnx"),
                   help="torch: the run's PyTorch model (default); onnx: the graph written by `polyhead export "
                        "RUN`, run by onnxruntime on the CPU (RUN_DIR may then be the export folder)")
    add_model_input_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from polyhead.api import Predictor

    predictor = Predictor.load(args.run_dir, args.device, args.backend)
    n = predictor.predict_to_file(args.images or args.table, args.out, **input_kwargs(args))
    print(f"wrote {n} predictions to {args.out}")
    return 0
