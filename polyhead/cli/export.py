"""polyhead export RUN [--format onnx|triton] [--out DIR] [--opset N] [--name NAME] [--check]"""

from __future__ import annotations

FORMATS = ("onnx", "triton")


def add_parser(sub) -> None:
    from polyhead.export import DEFAULT_MAX_BATCH, DEFAULT_OPSET, MAX_OPSET, MIN_OPSET

    p = sub.add_parser("export", help="export a trained model to ONNX or a Triton model repository",
                       description="Writes one ONNX graph: input 'images' float32 [batch, C, H, W] in 0..1 "
                                   "(normalised inside), per task an output '<task>' (probabilities) and "
                                   "'<task>_logits', and the metadata a client needs (docs/serving.md).")
    p.add_argument("run_dir", help="run folder (or bundle folder) written by `polyhead train`")
    p.add_argument("--format", default="onnx", help=f"{' or '.join(FORMATS)} (default: onnx)")
    p.add_argument("--out", help="output folder (default: RUN/export/onnx or RUN/export/triton)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset, {MIN_OPSET} to {MAX_OPSET} (default: {DEFAULT_OPSET})")
    p.add_argument("--name", help="model name (default: the run's config name)")
    p.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH,
                   help=f"triton: the largest batch Triton forms (default: {DEFAULT_MAX_BATCH})")
    p.add_argument("--check", action="store_true",
                   help="run the graph with onnxruntime and compare it with PyTorch (exit status 1 on a mismatch)")
    p.add_argument("--check-images", help="folder of images for --check (default: 16 generated images)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from polyhead.errors import PolyheadError
    from polyhead.export.metadata import check_model_name
    from polyhead.export.onnx import check_opset, export_onnx
    from polyhead.export.paths import MODEL_FILE, default_export_dir, default_model_name, run_folder
    from polyhead.export.triton import write_triton_repository
    from polyhead.model.bundle import load_bundle

    if args.format not in FORMATS:
        raise PolyheadError(f"--format {args.format!r}: expected {' or '.join(FORMATS)}")
    check_opset(args.opset)
    bundle = load_bundle(args.run_dir)
    flag = "--name" if args.name else "the default model name (from the run folder; set --name)"
    name = check_model_name(args.name or default_model_name(run_folder(args.run_dir)), flag)
    out = Path(args.out) if args.out else default_export_dir(args.run_dir, args.format)
    try:
        if args.format == "onnx":
            graph = export_onnx(bundle, out / MODEL_FILE, name=name, opset=args.opset)
            print(f"wrote {graph} (model '{name}', opset {args.opset})")
        else:
            folder = write_triton_repository(bundle, out, name=name, opset=args.opset,
                                             max_batch_size=args.max_batch_size)
            graph = folder / "1" / MODEL_FILE
            print(f"wrote Triton model repository {out} (model '{name}': {folder}/config.pbtxt, {graph}; opset "
                  f"{args.opset}); serve it with `tritonserver --model-repository {out}`")
    except OSError as exc:
        flag = "--out" if args.out else "the run's export folder (set --out)"
        raise PolyheadError(f"cannot write the export to '{out}' ({flag}): {exc.strerror or exc}") from None
    return _check(bundle, graph, args.check_images) if args.check else 0


def _check(bundle, graph, image_dir) -> int:
    """Parity of onnxruntime vs PyTorch, one line per task; 1 when a task is off."""
    from pathlib import Path

    from polyhead.api import list_images
    from polyhead.export.parity import TOLERANCE, check_export, load_images, passed, random_images
    from polyhead.export.runtime import OnnxRunner

    runner = OnnxRunner(graph)
    if image_dir:
        images = load_images(list_images(Path(image_dir))[:32], runner.channels, runner.image_size)
    else:
        images = random_images(16, runner.channels, runner.image_size)
    report = check_export(bundle.model, runner, images)
    for task, r in report.items():
        verdict = "same" if r["same_decoded"] else "DIFFERENT"
        print(f"check {task}: max |p_onnx - p_torch| = {r['max_abs_diff']:.2e} over {r['images']} images "
              f"(tolerance {TOLERANCE:g}); decoded predictions {verdict}")
    ok = passed(report)
    print("check passed" if ok else "check FAILED: onnxruntime and PyTorch disagree beyond the tolerance")
    return 0 if ok else 1
