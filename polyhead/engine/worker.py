"""One training process of a multi-process run (started by polyhead.engine.launch):

    python -m polyhead.engine.worker CONFIG.yaml --name-hint NAME --result RESULT.json [--resume RUN_DIR]

It joins the process group from the launcher's environment and runs `fit`; rank 0 writes
{"run_dir": ...} to RESULT.json. A user's mistake (PolyheadError) is not printed here: its line goes
to RESULT.json.error-<rank>, and the launcher reports the first one, once, as `polyhead train` would."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="polyhead.engine.worker")
    p.add_argument("config")
    p.add_argument("--name-hint", default="run")
    p.add_argument("--result", required=True)
    p.add_argument("--resume")
    args = p.parse_args(argv)
    rank = int(os.environ.get("RANK", 0))
    from polyhead.errors import PolyheadError

    try:
        from rich.console import Console

        from polyhead.config.loading import from_yaml_text
        from polyhead.engine.fit import fit
        from polyhead.plugins import load_plugins

        cfg = from_yaml_text(Path(args.config).read_text())
        load_plugins(cfg.plugins)
        result = fit(cfg, console=Console(quiet=rank != 0), name_hint=args.name_hint, resume=args.resume)
        if rank == 0:
            Path(args.result).write_text(json.dumps({"run_dir": str(result.run_dir)}))
        return 0
    except PolyheadError as exc:
        from polyhead.engine.ddp_step import PeerFailed

        suffix = ".peer" if isinstance(exc, PeerFailed) else ""
        Path(f"{args.result}.error-{rank}{suffix}").write_text(str(exc).strip())
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
