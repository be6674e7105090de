"""polyhead embed RUN_DIR --images DIR|IMAGE...|--table TABLE --out emb.parquet [--dtype float32|float16]"""

from __future__ import annotations

from polyhead.cli.common import add_image_source_args, add_model_input_args, image_source, input_kwargs


def add_parser(sub) -> None:
    p = sub.add_parser("embed", help="write the shared features of images to Parquet (a search index)",
                       description="Writes one row per image: its path (`image`) and the model's pooled shared "
                                   "features (`embedding`, the input of every head), streamed in batches. "
                                   "`polyhead neighbors` and Predictor.similar search the file (cosine similarity, "
                                   "faiss). Unreadable images are left out and counted.")
    p.add_argument("run_dir", help="run folder (or bundle folder) written by `polyhead train` or `add-task`")
    add_image_source_args(p, "a folder of images (searched recursively), or one or more image files")
    p.add_argument("--out", required=True, help="the embeddings file (.parquet)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16"),
                   help="stored precision of the features (float16 halves the file; search computes in float32)")
    add_model_input_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from polyhead.api import Predictor

    predictor = Predictor.load(args.run_dir, args.device)
    source = image_source(args)
    done = predictor.embed_to_file(source, args.out, dtype=args.dtype, **input_kwargs(args))
    if done.ignored_files:
        print(f"left out {done.ignored_files} file(s) that are not images (by extension) under '{args.images[0]}'")
    if done.bad_images:
        print(f"left out {len(done.bad_images)} unreadable image(s), e.g. '{done.bad_images[0]}'")
    print(f"wrote {done.rows} embeddings of {done.dim} {args.dtype} to {args.out}")
    return 0
