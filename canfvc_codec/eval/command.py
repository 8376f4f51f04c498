"""``canfvc eval``: RD evaluation of canfvc against x265 / x264 / SVT-AV1 over a config."""

from __future__ import annotations

from pathlib import Path

import click

from canfvc_codec.cli_options import intra_coder_option, preset_options
from canfvc_codec.encoder.presets import refine_steps
from canfvc_codec.errors import UsageError
from canfvc_codec.eval import anchors
from canfvc_codec.eval.config import EvalConfig, load_config
from canfvc_codec.eval.refine_setting import RefineSetting
from canfvc_codec.eval.report import write_report
from canfvc_codec.eval.runner import DEFAULT_LAMBDAS, EvalOptions, run_evaluation
from canfvc_codec.hevc import DEFAULT_INTRA_CODER
from canfvc_codec.io.identity import check_distinct_files
from canfvc_codec.threads import MAX_CPU_THREADS


def parse_number_list(text: str, kind: type, what: str) -> tuple:
    """``"256,512"`` -> (256.0, 512.0); a clear UsageError otherwise."""
    try:
        values = tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(
            f"{what} must be a comma-separated list of numbers, not {text!r}"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise UsageError(f"{what} must be positive numbers, not {text!r}")
    return values


# What the report writes into --out (canfvc_codec.eval.report): files by name, folders whole.
REPORT_FILES = ("results.json", "summary.md")
REPORT_FOLDERS = ("csv", "plots", "compressai")


def check_inputs_outside_report(config_path: str, config: EvalConfig, out: str) -> None:
    """Refuse, before any work, a config or sequence file that the report would write over."""
    inputs = {"--config": config_path}
    inputs.update({f"sequence {seq.name}": str(seq.path) for seq in config.sequences})
    for name in REPORT_FILES:
        check_distinct_files(inputs, {"the report's": str(Path(out) / name)})
    for folder in REPORT_FOLDERS:
        written = Path(out, folder).resolve()
        for role, path in inputs.items():
            if Path(path).resolve().is_relative_to(written):
                raise UsageError(
                    f"{role} {path} is in {written}, which the report writes: move it or name "
                    "another --out"
                )


def evaluate(
    config_path: str,
    out: str,
    *,
    lambdas: str | None = None,
    qps: str | None = None,
    anchor_names: str = "x265,x264",
    model: str | None = None,
    device: str | None = None,
    threads: int | None = None,
    jobs: int = 1,
    resume: bool = False,
    max_frames: int | None = None,
    skip_canfvc: bool = False,
    work_dir: str | None = None,
    refine: int = 0,
    refine_inter: int | None = None,
    intra_coder: str = DEFAULT_INTRA_CODER,
    sequences: tuple[str, ...] = (),
) -> dict:
    """Run an evaluation and write its report; the library face of ``canfvc eval``.

    ``sequences``: only the config's sequences of these names (all when empty).
    """
    lmbdas = parse_number_list(lambdas, float, "--lambdas") if lambdas else DEFAULT_LAMBDAS
    qp_list = parse_number_list(qps, int, "--qps") if qps else None
    if max_frames is not None and max_frames < 1:
        raise UsageError("--max-frames must be at least 1")
    if resume and work_dir is None:
        raise UsageError("--resume needs --work-dir: the folder of the run to resume")
    options = EvalOptions(
        lambdas=lmbdas,
        qps=qp_list,
        anchors=tuple(anchors.parse_anchor_names(anchor_names)),
        model=model,
        device=device,
        threads=threads,
        jobs=jobs,
        refine=RefineSetting(refine, refine_inter),
        intra_coder=intra_coder,
        resume=resume,
        run_canfvc=not skip_canfvc,
        max_frames=max_frames,
    )
    config = load_config(config_path, only=sequences)
    check_inputs_outside_report(config_path, config, out)
    results = run_evaluation(
        config, Path(out), options, work_dir=Path(work_dir) if work_dir else None
    )
    write_report(results, Path(out))
    return results


@click.command("eval")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="JSON list of sequences (see bench/configs/dev.json).",
)
@click.option(
    "--sequence",
    "sequences",
    multiple=True,
    metavar="NAME",
    help="Only this sequence of the config (repeat for several) [default: all].",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for results.json, CSV, plots and summary.md.",
)
@click.option(
    "--lambdas",
    default=None,
    metavar="L1,L2,...",
    help="canfvc rates [default: " + ",".join(f"{v:g}" for v in DEFAULT_LAMBDAS) + "].",
)
@click.option(
    "--qps",
    default=None,
    metavar="Q1,Q2,...",
    help="Anchor QPs [default: 22,27,32,37 for x26x, 32,40,48,55 for SVT-AV1].",
)
@click.option(
    "--anchors",
    "anchor_names",
    default="x265,x264",
    show_default=True,
    help="Comma-separated anchors from x265, x264, svtav1, or 'none'.",
)
@click.option("--model", default=None, help="canfvc model name or path [default: canfvc's].")
@click.option("--device", default=None, help="Device for canfvc (cpu, cuda, auto).")
@click.option(
    "--threads",
    type=click.IntRange(0, MAX_CPU_THREADS),
    default=None,
    help="CPU threads of each canfvc encode and decode [default: the cores shared among the "
    "jobs; with one job, canfvc's own: one per core].",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="canfvc rate points coded at once, each in its own processes.",
)
@preset_options
@intra_coder_option
@click.option(
    "--resume",
    is_flag=True,
    help="Reuse the canfvc points an earlier run in --work-dir finished for the same frames.",
)
@click.option(
    "--max-frames",
    type=int,
    default=None,
    help="Code at most this many frames of each sequence (quick runs).",
)
@click.option("--skip-canfvc", is_flag=True, help="Run the anchors only.")
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep bitstreams and extracted frames here instead of a temporary folder.",
)
def eval_command(
    config_path: str,
    sequences: tuple[str, ...],
    out: str,
    lambdas: str | None,
    qps: str | None,
    anchor_names: str,
    model: str | None,
    device: str | None,
    threads: int | None,
    jobs: int,
    preset: str,
    refine: int | None,
    refine_inter: int | None,
    intra_coder: str,
    resume: bool,
    max_frames: int | None,
    skip_canfvc: bool,
    work_dir: str | None,
) -> None:
    """Compare canfvc with conventional codecs: BD-rates, RD plots, speed and memory."""
    refine, refine_inter = refine_steps(preset, refine, refine_inter)
    results = evaluate(
        config_path,
        out,
        lambdas=lambdas,
        qps=qps,
        anchor_names=anchor_names,
        model=model,
        device=device,
        threads=threads,
        jobs=jobs,
        resume=resume,
        max_frames=max_frames,
        skip_canfvc=skip_canfvc,
        work_dir=work_dir,
        refine=refine,
        refine_inter=refine_inter,
        intra_coder=intra_coder,
        sequences=sequences,
    )
    click.echo(
        f"{len(results['sequences'])} sequences evaluated; summary in {Path(out) / 'summary.md'}",
        err=True,
    )
