"""`instructbeam` command line: run a config, or inspect or export a finished run."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import yaml

from pipelines.errors import InputError, RunFailed
from pipelines.runtime.interrupt import EXIT_INTERRUPTED, Interrupt, catch_interrupt

STRICT_TARGETS_EXIT = 3  # 1: the run failed its checks; 2: bad input


def _parse_set(items: list[str]) -> dict[str, object]:
    overrides: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--set {item!r}: expected KEY=VALUE "
                             "(e.g. self_instruct.num_instructions=200)")
        overrides[key] = yaml.safe_load(value)
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="instructbeam",
        description="Generate and filter instruction-tuning data on Apache Beam.")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser(
        "run", help="run a recipe config; extra arguments go to Beam",
        epilog="An existing output_dir is replaced only when it is a complete earlier run of "
               "instructbeam holding nothing else; otherwise the run stops before it starts "
               "and names what is there. Example: instructbeam run "
               "configs/self_instruct_demo.yaml")
    run_p.add_argument("config", help="YAML config file")
    run_p.add_argument("--output-dir", metavar="DIR",
                       help="write the run to DIR (a path or gs:// prefix) instead of the "
                            "config's output_dir; same as --set output_dir=DIR")
    run_p.add_argument("--overwrite", action="store_true",
                       help="replace output_dir even if it holds files this tool did not "
                       "write (never the current or home directory, a root, or a folder "
                       "holding the config or an input)")
    run_p.add_argument("--no-cache", action="store_true", help="do not read or write the "
                       "response cache")
    run_p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set self_instruct.lanes=2")
    run_p.add_argument("--strict-targets", action="store_true",
                       help="exit 3 (after writing the outputs) when a target such as "
                       "self_instruct.num_instructions was not met")
    inspect_p = sub.add_parser("inspect", help="print the summary of a finished run")
    inspect_p.add_argument("output_dir")
    report_p = sub.add_parser("report", help="(re)write a finished run's report.html")
    report_p.add_argument("output_dir")
    export_p = sub.add_parser(
        "export", help="write a finished run's kept data as Alpaca, ShareGPT or OpenAI chat",
        epilog="Example: instructbeam export out/self_instruct_demo --format sharegpt")
    export_p.add_argument("output_dir", help="a finished run's output directory")
    export_p.add_argument("--format", required=True, choices=("alpaca", "sharegpt", "openai"))
    export_p.add_argument("--output", help="file to write (default: OUTPUT_DIR.export/"
                          "alpaca.json, sharegpt.json or openai.jsonl, beside the run folder, "
                          "so a rerun that replaces the run keeps it)")
    export_p.add_argument("--with-provenance", action="store_true",
                          help="add meta: {id, generator, prompt_ref} to every item")
    plan_p = sub.add_parser(
        "plan", help="build a config's Dataflow job offline (no network) and print its size",
        epilog="Example: instructbeam plan configs/self_instruct_demo.yaml --set output_dir="
               "gs://BUCKET/out --set cache.dir=gs://BUCKET/cache --project P --region R "
               "--temp_location gs://BUCKET/tmp --generation_accelerator "
               "'type:nvidia-l4;count:1;install-nvidia-driver'")
    plan_p.add_argument("config", help="YAML config file")
    plan_p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args, beam_args = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "inspect":
            return _inspect(Path(args.output_dir))
        if args.command == "report":
            return _report(Path(args.output_dir))
        if args.command == "export":
            if beam_args:
                parser.error(f"unexpected arguments: {' '.join(beam_args)}")
            return _export(args)
        if args.command == "plan":
            return _plan(args, beam_args)
        if beam_args and not all(a.startswith("--") for a in beam_args):
            parser.error(f"unexpected arguments: {' '.join(beam_args)}")
        with catch_interrupt(time.time()) as interrupt:
            try:
                return _run(args, beam_args, interrupt)
            except BaseException:
                if not interrupt.requested:
                    raise
                from pipelines.outputs.progress import PROGRESS

                PROGRESS.finish()  # end an in-place progress line
                # run() has removed its staging directory and stopped its servers.
                print(interrupt.message(), file=sys.stderr, flush=True)
                return EXIT_INTERRUPTED
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, beam_args: list[str], interrupt: Interrupt) -> int:
    from pipelines.config import load_config
    from pipelines.generators.cache import default_cache_dir
    from pipelines.outputs.progress import PROGRESS
    from pipelines.outputs.report import format_summary
    from pipelines.outputs.targets import missed
    from pipelines.recipes.registry import REGISTRY
    from pipelines.run import run
    from pipelines.runtime.beam_options import check_run_options

    overrides = _parse_set(args.set)
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    if args.no_cache:
        overrides["cache.enabled"] = False
    cfg = load_config(args.config, overrides)
    check_run_options(cfg, beam_args)  # a bad option is one line, before "running"
    interrupt.caching = cfg.cache.enabled
    interrupt.cache_dir = (cfg.cache.dir or default_cache_dir()) if cfg.cache.enabled else None
    source = (f"{cfg.generator.backend}:{cfg.generator.model}"
              if REGISTRY[cfg.recipe].uses_generator
              else f"{cfg.input.path if cfg.input else '?'} (no generator)")
    print(f"instructbeam: running {cfg.recipe} on {source} -> {cfg.output_dir}",
          file=sys.stderr, flush=True)
    try:
        result = run(cfg, beam_args, overwrite=args.overwrite, config_path=args.config)
    except RunFailed as exc:
        from pipelines.outputs.manifest import read

        out = Path(cfg.output_dir).resolve()
        print(format_summary(read(out), out))
        print(f"error: the run finished but failed its checks: {exc}", file=sys.stderr)
        return 1
    PROGRESS.finish()
    print(format_summary(result.manifest, result.output_dir))
    short = missed(result.manifest)
    if short and args.strict_targets:
        print("error: --strict-targets: not met: " + "; ".join(
            f"{name} (wanted {t['wanted']}, got {t['got']})" for name, t in short.items()),
            file=sys.stderr)
        return STRICT_TARGETS_EXIT
    return 0


def _plan(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.config import load_config
    from pipelines.dataflow import plan_job

    cfg = load_config(args.config, _parse_set(args.set))
    plan = plan_job(cfg, beam_args)
    print(f"Dataflow job for {args.config}: {plan.summary()}")
    problems = plan.limit_problems()
    if problems:
        print(f"error: Dataflow would refuse this job: {'; '.join(problems)}", file=sys.stderr)
        return 1
    return 0


def _inspect(output_dir: Path) -> int:
    from pipelines.outputs.manifest import read
    from pipelines.outputs.report import format_summary

    if not (output_dir / "manifest.json").exists():
        raise InputError(f"{output_dir}: no manifest.json (not a finished instructbeam run)")
    print(format_summary(read(output_dir), output_dir))
    return 0


def _report(output_dir: Path) -> int:
    from pipelines.outputs.report_html import write_report

    if not (output_dir / "manifest.json").exists():
        raise InputError(f"{output_dir}: no manifest.json (not a finished instructbeam run)")
    print(f"instructbeam: wrote {write_report(output_dir)}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from pipelines.outputs.export import export

    path, count = export(Path(args.output_dir), args.format,
                         Path(args.output) if args.output else None,
                         with_provenance=args.with_provenance)
    print(f"instructbeam: wrote {count} {args.format} records to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
