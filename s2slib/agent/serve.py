"""Serve the live agent: ``python -m s2slib.agent.serve`` (``make demo``).

    python -m s2slib.agent.serve [--run runs/laptop] [--port 7860] [--public] [--no-demo]
                                 [--end-of-turn-ms 352] [--max-sessions 8] [--threads 1]

Serves http://127.0.0.1:7860/ (the plain page), ``/demo`` (Gradio), ``/ws`` and ``/health``. It binds loopback
unless ``--public`` is given (then every interface: anyone who can reach the port can talk to it). Without
``--run`` it uses the newest run with trained checkpoints (a smoke run only when there is no other); when there is none, ``--train-missing`` (what
``make demo`` passes) runs the laptop-profile notebooks that are missing first, with their progress, instead of
failing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# what the agent needs, and the notebook that makes it (in course order)
NEEDS = (("01", "data/manifests"), ("02", "codec/codec.pt"), ("05", "s2s_pretrain/s2s.pt"),
         ("06", "s2s_answer/s2s.pt"))


def missing_notebooks(run: Path) -> list[str]:
    """The notebooks whose outputs ``run`` lacks, from the first missing one on (later ones build on it)."""
    for i, (_, rel) in enumerate(NEEDS):
        if not (run / rel).exists():
            return [nb for nb, _ in NEEDS[i:]]
    return []


def ensure_trained(profile: str = "laptop") -> Path:
    """The newest trained run; when there is none, run the missing notebooks of ``profile`` first."""
    from s2slib import paths
    from s2slib.agent.engine import NoTrainedRun, find_run
    from s2slib.course import run_course

    try:
        return find_run()
    except NoTrainedRun:
        pass
    run = paths.runs_dir() / profile
    todo = missing_notebooks(run)
    print(f"No trained run yet: running notebooks {', '.join(todo)} at the {profile} profile into {run} first "
          "(on 2 CPU cores the laptop profile takes about an hour and a half; progress follows).", flush=True)
    results, _ = run_course(profile=profile, only=todo)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise SystemExit(f"error: notebook {failed[0].name} failed; see {run}/notebooks for its output")
    return find_run()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m s2slib.agent.serve", description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, help="run directory (default: the newest with trained checkpoints)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    p.add_argument("--public", action="store_true", help="bind every interface (0.0.0.0): reachable from the network")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--no-demo", action="store_true", help="serve / and /ws only, without the Gradio demo")
    p.add_argument("--train-missing", action="store_true",
                   help="with no trained run, run the missing laptop notebooks first instead of failing")
    p.add_argument("--end-of-turn-ms", type=int, help="silence that ends a turn")
    p.add_argument("--voice", default=None)
    p.add_argument("--emotion", default=None)
    p.add_argument("--max-sessions", type=int, default=8)
    p.add_argument("--max-frame-bytes", type=int, default=64 * 1024)
    p.add_argument("--idle-timeout", type=float, default=120.0, help="seconds")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads per operation (1 measured fastest on 2 cores: VAD and answers have their own)")
    args = p.parse_args(argv)

    import dataclasses

    import uvicorn

    from s2slib.agent.config import AgentConfig, ServerLimits
    from s2slib.agent.engine import AgentEngine, NoTrainedRun
    from s2slib.agent.server import create_app

    try:
        run = args.run or (ensure_trained() if args.train_missing else None)
        engine = AgentEngine(run, threads=args.threads)
    except NoTrainedRun as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = AgentConfig()
    overrides = {k: v for k, v in (("end_of_turn_ms", args.end_of_turn_ms), ("voice", args.voice),
                                   ("emotion", args.emotion)) if v is not None}
    config = dataclasses.replace(config, **overrides)
    engine.check_voice(config.voice)
    engine.check_emotion(config.emotion)
    limits = ServerLimits(max_frame_bytes=args.max_frame_bytes, max_sessions=args.max_sessions,
                          idle_timeout_s=args.idle_timeout)
    host = "0.0.0.0" if args.public else args.host
    app = create_app(engine, config, limits, demo=not args.no_demo)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(f"Telugu voice agent on {engine.run}: http://{shown}:{args.port}/ (plain page), "
          f"http://{shown}:{args.port}/demo (Gradio)" + ("  [public: every interface]" if args.public else ""),
          flush=True)
    uvicorn.run(app, host=host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
