"""polyhead add-task RUN_DIR NEW.yaml [--device auto] [--keep-features]"""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("add-task", help="add task heads to a trained run, on its frozen shared features",
                       description="Trains only the heads of the task(s) in NEW.yaml (a `tasks:` section, each "
                                   "task with its `table`; optional `data:`, `training:` (epochs, seed), "
                                   "`optimizer:` (lr, weight_decay), `output_dir`, `run_name`) on the run's frozen "
                                   "shared features: one pass of the backbone over the images, cached, then "
                                   "epochs over the cached features. Writes a NEW run folder whose bundle has the "
                                   "old heads unchanged plus the new ones; predict, evaluate, export and serve "
                                   "use it as any run.")
    p.add_argument("run_dir", help="run folder written by `polyhead train` (or by `add-task`)")
    p.add_argument("new_tasks", metavar="NEW.yaml", help="the new task(s): a `tasks:` section")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda (or gpu), cuda:N or mps")
    p.add_argument("--keep-features", action="store_true",
                   help="keep the cached features (RUN/features/<split>.safetensors) instead of deleting them")
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console

    from polyhead.engine.add_task import add_task
    from polyhead.engine.summary import metrics_table

    console = Console()
    done = add_task(args.run_dir, args.new_tasks, device=args.device, console=console,
                    keep_features=args.keep_features, show_progress=console.is_interactive)
    for split, metrics in done.metrics.items():
        console.print(metrics_table(metrics, done.tasks, f"{split} metrics (new tasks)"))
    line = (f"add-task took {done.seconds:.1f} s: features {done.feature_seconds:.1f} s (one pass over "
            f"{done.images} images), heads {done.head_seconds:.1f} s")
    if done.base_training_seconds:
        line += (f"; the base run's full training took {done.base_training_seconds:.1f} s (its metrics.json), "
                 f"{done.base_training_seconds / max(done.seconds, 1e-9):.1f}x as long")
    console.print(line, soft_wrap=True)
    console.print(f"run folder: [bold]{done.run_dir}[/]")
    return 0
