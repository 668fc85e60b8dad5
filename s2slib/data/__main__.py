"""Command line for the data stage (the same code notebook 01 calls).

    python -m s2slib.data sources                       # the registry: name, kind, licence, hours
    python -m s2slib.data acquire slr66-te               # download (resumable, verified) and unpack one corpus
    python -m s2slib.data build --out runs/mine [--sources synthetic-te,samples-te] [--n-sentences 100] ...
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from s2slib import paths


def main(argv: list[str] | None = None) -> int:
    from s2slib.data.build import DataConfig

    parser = argparse.ArgumentParser(prog="python -m s2slib.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("sources", help="list the registered corpora")
    acq = sub.add_parser("acquire", help="download and unpack a corpus into the data cache")
    acq.add_argument("name")
    build = sub.add_parser("build", help="build manifests, conversations and the data card into a run directory")
    build.add_argument("--out", required=True, help="run directory")
    build.add_argument("--profile", default="laptop", help="recorded in the run directory")
    defaults = DataConfig()
    for f in dataclasses.fields(DataConfig):
        if f.name == "preprocess":
            continue
        value = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            build.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        elif isinstance(value, tuple):
            build.add_argument(flag, default=",".join(value), help="comma-separated")
        else:
            build.add_argument(flag, type=type(value), default=value)
    args = parser.parse_args(argv)

    from s2slib.data.sources import SOURCES

    if args.command == "sources":
        for s in SOURCES.values():
            gated = ", gated" if s.gated else ""
            print(f"{s.name:24s} {s.kind:12s} {s.license:16s} ~{s.approx_hours or '?'} h{gated}")
        return 0
    if args.command == "acquire":
        from s2slib.data.corpora import acquire
        from s2slib.data.download import DownloadError

        try:
            print(acquire(args.name, paths.cache_dir() / "corpora"))
        except DownloadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0

    from s2slib.data.build import build_dataset
    from s2slib.run import RunDir

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(DataConfig) if f.name != "preprocess"}
    values["sources"] = tuple(s for s in values["sources"].split(",") if s)
    result = build_dataset(RunDir.open(args.out, args.profile), DataConfig(**values))
    print(f"{result.card['n_utterances']} utterances, {result.card['hours_total']:.3f} h; card: {args.out}/data/card.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
