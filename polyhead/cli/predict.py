"""polyhead predict RUN_DIR --images DIR|IMAGE...|--table TABLE --out predictions.parquet|.csv|- [--backend torch|onnx]
[--devices N]"""

from __future__ import annotations

import sys

from polyhead.cli.common import add_image_source_args, add_model_input_args, image_source, input_kwargs


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="predict every task for images, a folder of images or a table",
                       description="Writes one row per image: per multiclass task the label, its probability and "
                                   "the top-k; per binary task the label and the positive class's probability; per "
                                   "multilabel task the labels over threshold and every label's probability; and "
                                   "`error`, why an image could not be read (empty for a good one). Streams in "
                                   "batches; the output file appears only when complete.")
    p.add_argument("run_dir", help="run folder (or bundle folder) written by `polyhead train`")
    add_image_source_args(p, "a folder of images (searched recursively; other files are counted and left out), "
                             "or one or more image files")
    p.add_argument("--out", required=True,
                   help="output file: .parquet, .csv (list cells joined with the task's delimiter), "
                        "or - for CSV on stdout")
    p.add_argument("--on-bad-image", choices=("error", "skip"), default="skip",
                   help="an unreadable, missing or truncated image: skip (default; its row gets the reason in "
                        "the 'error' column and empty predictions) or error (stop, naming it)")
    p.add_argument("--backend", default="torch", choices=("torch", "onnx"),
                   help="torch: the run's PyTorch model (default); onnx: the graph written by `polyhead export "
                        "RUN`, run by onnxruntime on the CPU (RUN_DIR may then be the export folder)")
    p.add_argument("--devices", type=int, default=1, metavar="N",
                   help="N processes, each predicting a share (GPUs 0..N-1, or the CPU's cores shared out with "
                        "--device cpu); one output file, every row once, in input order (default: 1)")
    add_model_input_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from polyhead.api import Predictor

    to_stdout = args.out == "-"
    say = sys.stderr if to_stdout else sys.stdout  # stdout is the CSV itself with --out -
    source = image_source(args)
    kwargs = input_kwargs(args)
    if args.devices != 1:
        from polyhead.engine.sharded_predict import predict_sharded

        print(f"predicting on {args.devices} processes", file=say)
        done = predict_sharded(args.run_dir, source, args.out, processes=args.devices, device=args.device,
                               backend=args.backend, plugins=getattr(args, "plugin", None) or (),
                               on_bad_image=args.on_bad_image, **kwargs)
    else:
        predictor = Predictor.load(args.run_dir, args.device, args.backend)
        if to_stdout:
            kwargs["show_progress"] = False
        done = predictor.predict_to_file(source, args.out, on_bad_image=args.on_bad_image, **kwargs)
    if done.ignored_files:
        print(f"left out {done.ignored_files} file(s) that are not images (by extension) under "
              f"'{args.images[0]}'", file=say)
    if done.bad_images:
        print(f"skipped {done.bad_images} unreadable image(s); see the 'error' column", file=say)
    print(f"wrote {done.rows} predictions to {'stdout' if to_stdout else args.out}", file=say)
    return 0
