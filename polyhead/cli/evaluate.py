"""polyhead evaluate RUN_DIR --table TABLE"""

from __future__ import annotations

from polyhead.cli.common import add_model_input_args, input_kwargs


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="score a trained model on a labelled table",
                       description="Per-task metrics of a run's model on a labelled table; rows missing a "
                                   "task's label are not scored for that task.")
    p.add_argument("run_dir", help="run folder (or bundle folder) written by `polyhead train`")
    p.add_argument("--table", required=True, help="labelled CSV / Parquet / JSONL table or image folder")
    p.add_argument("--out", help="metrics JSON to write (default: <run>/evaluations/<table>.json, in the run "
                                 "folder also when RUN_DIR is its bundle folder RUN/model)")
    p.add_argument("--no-plots", action="store_true",
                   help="skip the plots (RUN_DIR/evaluations/<table>/plots/) and the refreshed RUN_DIR/report.html")
    add_model_input_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    from pathlib import Path

    from rich.console import Console

    from polyhead.api import Predictor
    from polyhead.engine.summary import metrics_table

    predictor = Predictor.load(args.run_dir, args.device)
    run_dir = predictor.run_dir  # RUN/model evaluates into RUN, never inside the bundle
    evaluations = run_dir / "evaluations"
    plots = not args.no_plots and (predictor.config is None or predictor.config.report.enabled)
    plots_dir = evaluations / Path(args.table).stem / "plots" if plots else None
    metrics = predictor.evaluate(args.table, plots_dir=plots_dir, **input_kwargs(args))
    out = Path(args.out) if args.out else evaluations / f"{Path(args.table).stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"table": str(Path(args.table).resolve()), "metrics": metrics}, indent=2))
    console = Console()
    console.print(metrics_table(metrics, predictor.tasks, f"metrics on {args.table}"))
    skipped = [f"{name} (no column '{t.column}')" for name, t in predictor.tasks.items() if name not in metrics]
    if skipped:
        console.print(f"[yellow]not scored: {', '.join(skipped)}[/]")
    console.print(f"written: {out}")
    if plots:  # the run's report, written again, shows every evaluation (metrics and plots)
        from polyhead.reports.html import write_report

        console.print(f"plots: {plots_dir}\nreport: {write_report(run_dir)}")
    from polyhead.engine.tracked_run import log_evaluation

    log_evaluation(run_dir, args.table, metrics, out, console)  # into the training's MLflow run, if any
    return 0
