"""`instructbeam` command line: run a config, or inspect or export a finished run."""

from __future__ import annotations

import argparse
import logging
import signal
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
               "instructbeam holding nothing else, every file as it wrote it; otherwise the run "
               "stops before it starts and names what is there. Its review/ is carried over. "
               "Example: instructbeam run configs/self_instruct_demo.yaml")
    run_p.add_argument("config", help="YAML config file")
    run_p.add_argument("--output-dir", metavar="DIR",
                       help="write the run to DIR (a path or gs:// prefix) instead of the "
                            "config's output_dir; same as --set output_dir=DIR")
    run_p.add_argument("--overwrite", action="store_true",
                       help="replace output_dir even if it holds files this tool did not "
                       "write or that changed since (never the current or home directory, a "
                       "root, or a folder holding the config or an input; review/ is kept)")
    run_p.add_argument("--no-cache", action="store_true", help="do not read or write the "
                       "response cache")
    run_p.add_argument("--retry-failed", action="store_true",
                       help="ask again the requests an earlier run with this cache failed "
                       "for good (by default they are replayed as failures, so a rerun "
                       "decides the same); same as --set cache.retry_failed=true")
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
        "export", help="write a finished run's kept data as Alpaca, ShareGPT, OpenAI chat or "
        "EcomGPT's six-part format",
        epilog="Example: instructbeam export out/self_instruct_demo --format sharegpt")
    export_p.add_argument("output_dir", help="a finished run's output directory")
    export_p.add_argument("--format", required=True,
                          choices=("alpaca", "sharegpt", "openai", "ecomgpt"))
    export_p.add_argument("--output", help="file to write (default: OUTPUT_DIR.export/"
                          "alpaca.json, sharegpt.json, openai.jsonl or ecomgpt.jsonl, beside "
                          "the run folder, so a rerun that replaces the run keeps it)")
    export_p.add_argument("--with-provenance", action="store_true",
                          help="add meta: {id, generator, prompt_ref} to every item")
    export_p.add_argument("--first-exchange", action="store_true",
                          help="alpaca only: keep the first exchange of each dialogue "
                               "(without it, a run holding dialogues is refused)")
    review_p = sub.add_parser(
        "review", help="review a finished run's audit sample in a browser (good/bad/skip)",
        epilog="Serves the page on 127.0.0.1 until Ctrl-C; verdicts are appended to "
               "OUTPUT_DIR/review/verdicts.jsonl. Example: instructbeam review "
               "out/self_instruct_demo --no-serve")
    review_p.add_argument("output_dir", help="a finished run's output directory")
    review_p.add_argument("--no-serve", action="store_true",
                          help="only write OUTPUT_DIR/review/index.html; opened as a file it "
                          "keeps verdicts in the browser until you export them")
    review_p.add_argument("--port", type=int, default=0,
                          help="port on 127.0.0.1 to serve on (default: a free one)")
    review_p.add_argument("--import", dest="import_file", metavar="FILE",
                          help="append the verdicts of a file the page exported, then exit")
    plan_p = sub.add_parser(
        "plan", help="build a config's Dataflow job offline (no network) and print its size",
        epilog="Example: instructbeam plan configs/self_instruct_demo.yaml --set output_dir="
               "gs://BUCKET/out --set cache.dir=gs://BUCKET/cache --project P --region R "
               "--temp_location gs://BUCKET/tmp --generation_accelerator "
               "'type:nvidia-l4;count:1;install-nvidia-driver'")
    plan_p.add_argument("config", help="YAML config file")
    plan_p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    train_p = sub.add_parser(
        "train-classifier", help="train the quality classifier scorer from labelled rows",
        epilog="LABELS: JSONL files of {instruction, input, output, label: 1 good | 0 bad}, "
               "review verdict files, or run folders (their review/verdicts.jsonl). Example: "
               "instructbeam train-classifier labels.jsonl --out models/quality")
    train_p.add_argument("labels", nargs="+", help="labelled JSONL files or run folders")
    train_p.add_argument("--out", required=True, metavar="DIR",
                         help="folder for the artifact (filters.scorers.classifier.model_dir)")
    train_p.add_argument("--embedding", default="all-minilm-l6-v2",
                         help="sentence embedder (default all-minilm-l6-v2; char-trigram "
                              "needs no model)")
    train_p.add_argument("--c", type=float, default=1.0,
                         help="inverse regularization strength of the logistic regression")
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
        if args.command == "review":
            if beam_args:
                parser.error(f"unexpected arguments: {' '.join(beam_args)}")
            return _review(args)
        if args.command == "train-classifier":
            return _train_classifier(args)
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
    from pipelines.recipes.registry import REGISTRY, recipe_info
    from pipelines.run import run
    from pipelines.runtime.beam_options import check_run_options

    overrides = _parse_set(args.set)
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    if args.no_cache:
        overrides["cache.enabled"] = False
    if args.retry_failed:
        overrides["cache.retry_failed"] = True
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
        print(format_summary(read(out), out, recipe_info()))
        print(f"error: the run finished but failed its checks: {exc}", file=sys.stderr)
        return 1
    PROGRESS.finish()
    print(format_summary(result.manifest, result.output_dir, recipe_info()))
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
    from pipelines.outputs.review import read_sample, read_verdicts, verdicts_path
    from pipelines.outputs.review_stats import format_review
    from pipelines.recipes.registry import recipe_info

    if not (output_dir / "manifest.json").exists():
        raise InputError(f"{output_dir}: no manifest.json (not a finished instructbeam run)")
    print(format_summary(read(output_dir), output_dir, recipe_info()))
    where = verdicts_path(output_dir)
    if where.exists():  # once someone has reviewed (`instructbeam review`)
        sample = read_sample(output_dir)
        print("\n".join(format_review(sample, read_verdicts(output_dir), str(where))))
    return 0


def _report(output_dir: Path) -> int:
    from pipelines.outputs.report_html import write_report

    if not (output_dir / "manifest.json").exists():
        raise InputError(f"{output_dir}: no manifest.json (not a finished instructbeam run)")
    print(f"instructbeam: wrote {write_report(output_dir)}")
    return 0


def _review(args: argparse.Namespace) -> int:
    from pipelines.outputs.review import import_verdicts, read_sample, read_verdicts, verdicts_path
    from pipelines.outputs.review_page import write_page
    from pipelines.outputs.review_server import ReviewServer

    run_dir = Path(args.output_dir)
    if not (run_dir / "manifest.json").exists():
        raise InputError(f"{run_dir}: no manifest.json (not a finished instructbeam run)")
    if args.import_file:
        added = import_verdicts(run_dir, Path(args.import_file))
        print(f"instructbeam: appended {added} verdicts to {verdicts_path(run_dir)}")
    page = write_page(run_dir)
    sample, verdicts = read_sample(run_dir), read_verdicts(run_dir)
    reviewed = sum(1 for row in sample if row.id in verdicts)
    print(f"instructbeam: wrote {page} ({len(sample)} audit rows, {reviewed} reviewed)")
    if args.no_serve or args.import_file:
        return 0
    try:
        server = ReviewServer(run_dir, args.port)
    except OSError as exc:
        raise InputError(f"cannot serve on 127.0.0.1:{args.port}: {exc.strerror or exc}; "
                         "pass --port 0 for a free port, or --no-serve") from exc
    print(f"instructbeam: reviewing at {server.url} (verdicts go to {verdicts_path(run_dir)}); "
          "Ctrl-C stops", flush=True)
    # A process started with SIGINT ignored (a background job, nohup) inherits that, and the
    # server would then never stop on Ctrl-C: the promise above is kept explicitly, as `run`
    # does with its own handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _export(args: argparse.Namespace) -> int:
    from pipelines.outputs.export import export_counted

    path, count, cut = export_counted(Path(args.output_dir), args.format,
                                      Path(args.output) if args.output else None,
                                      with_provenance=args.with_provenance,
                                      first_exchange=args.first_exchange)
    print(f"instructbeam: wrote {count} {args.format} records to {path}")
    if cut:
        print(f"instructbeam: warning: {cut} dialogues kept only their first exchange "
              "(Alpaca has no turns)", file=sys.stderr)
    return 0


def _train_classifier(args: argparse.Namespace) -> int:
    from filters.quality_classifier import (
        LabelError,
        read_labelled,
        save_classifier,
        train_classifier,
    )
    from filters.tag_embeddings import EMBEDDERS

    if args.embedding not in EMBEDDERS:
        raise InputError(f"--embedding {args.embedding!r}: one of {', '.join(EMBEDDERS)}")
    if args.c <= 0:
        raise InputError("--c must be > 0")
    rows = []
    try:
        for name in args.labels:
            path = Path(name)
            rows += read_labelled(path / "review" / "verdicts.jsonl" if path.is_dir() else path)
        model = train_classifier(rows, args.embedding, args.c)
    except LabelError as exc:
        raise InputError(str(exc)) from None
    except ImportError as exc:
        raise InputError(f"{exc.name} is not installed; pip install 'instructbeam[quality]'"
                         ) from None
    path = save_classifier(model, Path(args.out))
    print(f"instructbeam: trained on {model.rows} rows ({model.positives} good), wrote {path} "
          f"(training data sha256 {model.training_sha256[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
