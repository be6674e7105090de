"""polyhead neighbors RUN_DIR --index emb.parquet --image Q.jpg [Q2.jpg ...] [-k 10] [--out neighbors.csv]"""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("neighbors", help="find the images most similar to a query image in an embeddings file",
                       description="Ranks the rows of an embeddings file (written by `polyhead embed` with the same "
                                   "run, or a run `add-task` made from it) by cosine similarity of the shared "
                                   "features to each query image. The faiss index is built once next to the file "
                                   "(emb.faiss) and rebuilt when the file changes.")
    p.add_argument("run_dir", help="run folder (or bundle folder) whose model embeds the query")
    p.add_argument("--index", required=True, help="the embeddings file (.parquet) written by `polyhead embed`")
    p.add_argument("--image", required=True, nargs="+", metavar="PATH", help="one or more query images")
    p.add_argument("-k", type=int, default=10, help="neighbours per query (default: 10)")
    p.add_argument("--out", help="write the neighbours as CSV (query, rank, image, score) instead of printing them; "
                                 "- for CSV on stdout")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda (or gpu), cuda:N or mps")
    p.set_defaults(func=run)


def run(args) -> int:
    from polyhead.api import Predictor

    predictor = Predictor.load(args.run_dir, args.device)
    found = predictor.similar(args.image, args.k, index=args.index)
    if args.out:
        found.to_csv(sys.stdout if args.out == "-" else args.out, index=False)
        if args.out != "-":
            print(f"wrote {len(found)} neighbours to {args.out}")
        return 0
    for query, rows in found.groupby("query", sort=False):
        print(f"query: {query}")
        for r in rows.itertuples():
            print(f"  {r.rank:>3}  {r.score:.4f}  {r.image}")
    return 0
