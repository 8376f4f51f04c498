"""Run every codec over every sequence and rate, and score the decoded videos.

canfvc runs through its real command line (``python -m canfvc_codec encode/decode``) in a child
process, so its bpp comes from real .cvc files and its times and memory are those a user sees. The
anchors run through ffmpeg (:mod:`canfvc_codec.eval.anchors`). Every codec is scored the same way:
its decoded 4:2:0 output against the same reference frames, read once per sequence through
:func:`canfvc_codec.eval.sequence.open_sequence` (down-scaled where the config's clip is used so)
and stored as raw 4:2:0 (for the anchors) and Y4M (for canfvc, whose header then carries size,
rate and range).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from canfvc_codec.bitstream import bits_per_pixel
from canfvc_codec.defaults import ANCHOR_LAMBDAS, INTRA_LAMBDA_FACTOR
from canfvc_codec.encoder.schedule import DEFAULT_INTRA_CHOICE
from canfvc_codec.errors import CanfvcError, InputError
from canfvc_codec.eval import anchors, bdrate
from canfvc_codec.eval.config import EvalConfig, SequenceSpec
from canfvc_codec.eval.metrics import QUALITY_KEYS, frame_metrics, mean_metrics
from canfvc_codec.eval.process import RunStats, run_measured
from canfvc_codec.eval.refine_setting import RefineSetting
from canfvc_codec.hevc import DEFAULT_INTRA_CODER
from canfvc_codec.io.frame import Frame, VideoInfo, frame_from_buffer, frame_to_bytes

DEFAULT_LAMBDAS = ANCHOR_LAMBDAS  # one point per trained anchor
CANFVC = "canfvc"
# Metrics the BD-rates are reported for (MS-SSIM on its natural 0..1 scale, as DCVC does).
BD_METRICS = ("psnr-yuv", "psnr-rgb", "ms-ssim-rgb")
RESULTS_VERSION = 1

Log = Callable[[str], None]


def _stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class EvalOptions:
    """What to run; ``None`` for ``model``/``device`` leaves canfvc's own defaults."""

    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS
    qps: tuple[int, ...] | None = None  # None: each anchor's default QPs
    anchors: tuple[str, ...] = ("x265", "x264")
    model: str | None = None
    device: str | None = None
    threads: int | None = None  # CPU threads of each canfvc command; None: see canfvc_threads
    jobs: int = 1  # canfvc rate points coded at once (each an encode, then a decode)
    # canfvc encode --refine / --refine-inter: the encoder's latent refinement steps
    refine: RefineSetting = field(default_factory=RefineSetting)
    intra_coder: str = DEFAULT_INTRA_CODER  # canfvc encode --intra-coder
    # Reuse the canfvc points a run in the same work folder finished (see run_canfvc).
    resume: bool = False
    run_canfvc: bool = True
    max_frames: int | None = None
    python: str = sys.executable


@dataclass
class PreparedSequence:
    """A sequence's reference frames, extracted once into the work folder."""

    spec: SequenceSpec
    info: VideoInfo
    frames: int
    raw_path: Path
    y4m_path: Path

    @property
    def geometry(self) -> anchors.Geometry:
        return anchors.Geometry(
            self.info.width, self.info.height, self.info.fps, self.info.bit_depth, self.frames
        )


@dataclass
class RatePoint:
    """One coded version of one sequence, with per-frame detail."""

    codec: str
    param: str  # "qp" or "lambda"
    value: float
    bytes: int
    bpp: float
    quality: dict[str, float]
    encode_s_per_frame: float
    decode_s_per_frame: float
    encode_peak_rss_mib: float
    decode_peak_rss_mib: float
    frames: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(data.pop("quality"))
        return data

    @classmethod
    def from_json(cls, data: dict) -> RatePoint:
        """The inverse of :meth:`to_json`."""
        fields = dict(data)
        quality = {key: fields.pop(key) for key in QUALITY_KEYS}
        return cls(**fields, quality=quality)


# ---------------------------------------------------------------------------------------------
# Reference frames


def prepare_sequence(
    spec: SequenceSpec, work_dir: Path, max_frames: int | None = None
) -> PreparedSequence:
    """Read the sequence once (:func:`open_sequence`) and store it as raw 4:2:0 and Y4M."""
    from canfvc_codec.eval.sequence import open_sequence  # the readers pull in ffmpeg helpers
    from canfvc_codec.io import open_writer

    frames = spec.frames if max_frames is None else min(spec.frames, max_frames)
    work_dir.mkdir(parents=True, exist_ok=True)
    raw_path = work_dir / "reference.yuv"
    y4m_path = work_dir / "reference.y4m"
    count = 0
    with open_sequence(spec, frames) as (info, pictures):
        info = VideoInfo(
            info.width,
            info.height,
            info.fps_num,
            info.fps_den,
            info.bit_depth,
            info.matrix,
            info.full_range,
            frames,
        )
        with open(raw_path, "wb") as raw, open_writer(str(y4m_path), info, overwrite=True) as y4m:
            for frame in pictures:
                raw.write(frame_to_bytes(frame, info))
                y4m.write(frame)
                count += 1
    if count < frames:
        raise InputError(
            f"{spec.name}: {spec.path.name} has {count} frames from frame "
            f"{spec.start}, the config asks for {frames}"
        )
    info.frame_count = count
    return PreparedSequence(spec, info, count, raw_path, y4m_path)


def read_raw(path: Path, info: VideoInfo, frames: int) -> Iterator[Frame]:
    """Frames of a raw 4:2:0 file, checking it holds exactly ``frames`` of them."""
    size = path.stat().st_size
    if size != frames * info.frame_bytes:
        raise InputError(f"{path.name} holds {size / info.frame_bytes:g} frames, expected {frames}")
    with open(path, "rb") as stream:
        for _ in range(frames):
            yield frame_from_buffer(stream.read(info.frame_bytes), info)


def score(
    prepared: PreparedSequence,
    decoded: Path,
    total_bytes: int,
    frame_bytes: list[int] | None,
    frame_types: list[str] | None = None,
) -> tuple[dict[str, float], list[dict]]:
    """Sequence means and per-frame rows of every quality metric, plus bpp (and the frame type,
    where the stream tells it)."""
    info = prepared.info
    # A listing that does not line up is worse than none.
    if frame_bytes is not None and len(frame_bytes) != prepared.frames:
        frame_bytes = None
    if frame_types is not None and len(frame_types) != prepared.frames:
        frame_types = None
    rows = []
    pairs = zip(
        read_raw(prepared.raw_path, info, prepared.frames),
        read_raw(decoded, info, prepared.frames),
        strict=True,
    )
    for index, (ref, dec) in enumerate(pairs):
        row: dict = {"frame": index}
        if frame_types is not None:
            row["type"] = frame_types[index]
        if frame_bytes is not None:
            row["bytes"] = frame_bytes[index]
            row["bpp"] = bits_per_pixel(frame_bytes[index], info.width, info.height)
        row.update(frame_metrics(ref, dec, info))
        rows.append(row)
    summary = mean_metrics(rows)
    summary["bpp"] = bits_per_pixel(total_bytes, info.width, info.height, prepared.frames)
    return summary, rows


def _point(
    codec: str,
    param: str,
    value: float,
    total_bytes: int,
    summary: dict,
    rows: list[dict],
    frames: int,
    enc: RunStats,
    dec: RunStats,
) -> RatePoint:
    return RatePoint(
        codec=codec,
        param=param,
        value=value,
        bytes=total_bytes,
        bpp=summary["bpp"],
        quality={k: summary[k] for k in QUALITY_KEYS},
        encode_s_per_frame=enc.wall_s / frames,
        decode_s_per_frame=dec.wall_s / frames,
        encode_peak_rss_mib=enc.peak_rss_mib,
        decode_peak_rss_mib=dec.peak_rss_mib,
        frames=rows,
    )


# ---------------------------------------------------------------------------------------------
# Anchors


def run_anchor(
    codec: anchors.AnchorCodec, prepared: PreparedSequence, qp: int, work_dir: Path, ffmpeg: str
) -> RatePoint:
    stream = work_dir / f"{codec.name}_qp{qp}{codec.suffix}"
    decoded = work_dir / f"{codec.name}_qp{qp}_decoded.yuv"
    geometry = prepared.geometry
    enc = anchors.encode(codec, prepared.raw_path, geometry, qp, prepared.spec.gop, stream, ffmpeg)
    dec = anchors.decode(stream, geometry, decoded, ffmpeg)
    try:
        total = stream.stat().st_size
        summary, rows = score(prepared, decoded, total, anchors.packet_sizes(stream, ffmpeg))
    finally:
        decoded.unlink(missing_ok=True)  # raw output is large; the stream stays for inspection
    return _point(codec.name, "qp", qp, total, summary, rows, prepared.frames, enc, dec)


# ---------------------------------------------------------------------------------------------
# canfvc through its command line


class CanfvcUnavailable(CanfvcError):
    """canfvc cannot run (command missing, no model, failing encoder): it is skipped, not fatal."""


@dataclass
class CanfvcCommand:
    """``python -m canfvc_codec`` with the evaluation's model and device options."""

    python: str
    model: str | None = None
    device: str | None = None
    timeout_s: float | None = None  # per encode or decode command
    threads: int | None = None
    # Encoder only: latent refinement steps (canfvc encode --refine, --refine-inter).
    refine: RefineSetting = field(default_factory=RefineSetting)
    # canfvc encode --intra-coder: another intra coder codes other streams, another curve.
    intra_coder: str = DEFAULT_INTRA_CODER

    def intra_record(self) -> dict:
        """What results and saved points store of the intra coder: nothing for the default, so
        that records written before the option existed read as the default."""
        return {} if self.intra_coder == DEFAULT_INTRA_CODER else {"intra_coder": self.intra_coder}

    def _base(self, command: str) -> list[str]:
        return [self.python, "-m", "canfvc_codec", command]

    def _common(self) -> list[str]:
        args = []
        if self.model is not None:
            args += ["--model", self.model]
        if self.device is not None:
            args += ["--device", self.device]
        if self.threads is not None:
            args += ["--threads", str(self.threads)]
        return args

    def check(self) -> None:
        """Raise CanfvcUnavailable unless both ``encode`` and ``decode`` start (a broken
        installation, or a missing dependency, is then reported instead of canfvc's points)."""
        for command in ("encode", "decode"):
            stats = run_measured(self._base(command) + ["--help"])
            if not stats.ok:
                raise CanfvcUnavailable(f"'canfvc {command}' does not start ({stats.error_line()})")

    def encode(self, source: Path, output: Path, lmbda: float, gop: int) -> RunStats:
        cmd = (
            self._base("encode")
            + [source, "-o", output, "--lambda", f"{lmbda:g}", "--gop", str(gop), "--quiet"]
            + ["--intra-choice", DEFAULT_INTRA_CHOICE]
            + ["--intra-coder", self.intra_coder]
            + self.refine.flags()
            + self._common()
        )
        stats = run_measured(cmd, timeout_s=self.timeout_s)
        if not stats.ok or not output.is_file():
            raise CanfvcUnavailable(f"encoding at lambda {lmbda:g} failed: {stats.error_line()}")
        return stats

    def decode(self, stream: Path, output: Path) -> RunStats:
        cmd = self._base("decode") + [stream, "-o", output, "--quiet"] + self._common()
        stats = run_measured(cmd, timeout_s=self.timeout_s)
        if not stats.ok:
            raise CanfvcUnavailable(f"decoding {stream.name} failed: {stats.error_line()}")
        return stats

    def info(self, stream: Path) -> dict:
        """``canfvc info --json``; an empty dict when the command is missing or says nothing."""
        stats = run_measured(self._base("info") + [stream, "--json"])
        if not stats.ok:
            return {}
        try:
            data = json.loads(stats.stdout)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


def _info_frame_field(info: dict, names: tuple[str, ...], kind: type) -> list | None:
    """One field of every record in the ``frames`` list of ``canfvc info --json`` (the first of
    ``names`` a record has), or None unless every record has one of type ``kind``."""
    frames = info.get("frames")
    if not isinstance(frames, list):
        return None
    values = [
        next((record[n] for n in names if n in record), None) if isinstance(record, dict) else None
        for record in frames
    ]
    return values if all(isinstance(v, kind) for v in values) else None


def _info_model_id(info: dict) -> str | None:
    header = info.get("header", info)
    model_id = header.get("model_id") if isinstance(header, dict) else None
    return str(model_id) if model_id is not None else None


def canfvc_threads(options: EvalOptions, cpu_count: int | None) -> int | None:
    """The threads each canfvc command gets: as asked, else (with several jobs) a share of the
    cores, so that the jobs do not oversubscribe them; None leaves canfvc's own default."""
    if options.threads is not None or options.jobs == 1:
        return options.threads
    return max(1, (cpu_count or 1) // options.jobs)


def run_canfvc_points(
    canfvc: CanfvcCommand,
    prepared: PreparedSequence,
    lambdas: tuple[float, ...],
    work_dir: Path,
    jobs: int,
    log: Log,
    resume: bool = False,
) -> list[tuple[RatePoint, str | None]]:
    """:func:`run_canfvc` at every λ, ``jobs`` at a time; results in the order of ``lambdas``."""

    def one(lmbda: float) -> tuple[RatePoint, str | None]:
        log(f"{prepared.spec.name}: canfvc lambda {lmbda:g}")
        return run_canfvc(canfvc, prepared, lmbda, work_dir, resume)

    if jobs == 1:
        return [one(lmbda) for lmbda in lambdas]
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # the work is in child processes
        futures = [pool.submit(one, lmbda) for lmbda in lambdas]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def run_canfvc(
    canfvc: CanfvcCommand,
    prepared: PreparedSequence,
    lmbda: float,
    work_dir: Path,
    resume: bool = False,
) -> tuple[RatePoint, str | None]:
    """Encode, decode and score one λ; (point, model id). Each finished point is saved beside its
    stream, and with ``resume`` a saved point of the same frames is returned instead of coding
    again: a run of hours that stops keeps what it finished."""
    # Streams of another encoder setting are other points: their own files, never resumed here.
    intra = canfvc.intra_record()
    stem = f"canfvc_lambda{lmbda:g}{canfvc.refine.stem()}"
    if intra:
        stem += f"_{canfvc.intra_coder}"
    stream = work_dir / f"{stem}.cvc"
    decoded = work_dir / f"{stem}_decoded.yuv"
    saved = work_dir / f"{stem}.point.json"
    spec = prepared.spec
    range_key = {"source": str(spec.path), "start": spec.start, "frames": prepared.frames}
    if resume and saved.is_file():
        try:
            record = json.loads(saved.read_text())
        except ValueError:
            record = {}  # cut off while being written: code the point again
        # Points saved before the encoder had the current intra choice, or its I-frames' λ,
        # were coded otherwise (points of before the intra λ coded I-frames at λ).
        same_choice = record.get("intra_choice") == DEFAULT_INTRA_CHOICE
        same_intra_lambda = record.get("intra_lambda_factor", 1.0) == INTRA_LAMBDA_FACTOR
        same_coder = record.get("intra_coder") == intra.get("intra_coder")
        if record.get("range") == range_key and same_choice and same_intra_lambda and same_coder:
            return RatePoint.from_json(record["point"]), record.get("model_id")
    saved.unlink(missing_ok=True)
    stream.unlink(missing_ok=True)
    decoded.unlink(missing_ok=True)
    enc = canfvc.encode(prepared.y4m_path, stream, lmbda, prepared.spec.gop)
    dec = canfvc.decode(stream, decoded)
    info = canfvc.info(stream)
    try:
        total = stream.stat().st_size
        frame_bytes = _info_frame_field(info, ("bytes", "size"), int)
        frame_types = _info_frame_field(info, ("type",), str)
        summary, rows = score(prepared, decoded, total, frame_bytes, frame_types)
    except InputError as exc:
        raise CanfvcUnavailable(f"decoded output unusable: {exc}") from None
    finally:
        decoded.unlink(missing_ok=True)
    point = _point(CANFVC, "lambda", lmbda, total, summary, rows, prepared.frames, enc, dec)
    model_id = _info_model_id(info)
    record = {
        "range": range_key,
        "intra_choice": DEFAULT_INTRA_CHOICE,
        "intra_lambda_factor": INTRA_LAMBDA_FACTOR,
        **intra,
        "model_id": model_id,
        "point": point.to_json(),
    }
    saved.write_text(json.dumps(record))
    return point, model_id


# ---------------------------------------------------------------------------------------------
# The whole evaluation


def machine_info() -> dict:
    """What the timings were measured on, load included (the machine may be shared)."""
    import os

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(
                line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return {
        "processor": cpu,
        "cpu_count": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def finalize_canfvc_status(results: dict) -> None:
    """A canfvc whose command exists but which produced nothing anywhere counts as skipped."""
    status = results.get("canfvc", {})
    sequences = results["sequences"].values()
    if status.get("status") == "ok" and not any(CANFVC in s["codecs"] for s in sequences):
        reasons = [s["skipped"][CANFVC] for s in sequences if CANFVC in s.get("skipped", {})]
        status.update(status="skipped", reason=reasons[0] if reasons else "no results")


def compute_bd_rates(sequences: dict, codecs: list[str]) -> dict:
    """{metric: {codec: {sequence: BDRate json, ..., "average": ...}}} against x265."""
    table: dict = {}
    for metric in BD_METRICS:
        table[metric] = {}
        for codec in codecs:
            if codec == anchors.REFERENCE_ANCHOR:
                continue
            per_seq = {}
            for name, seq in sequences.items():
                anchor = seq["codecs"].get(anchors.REFERENCE_ANCHOR)
                test = seq["codecs"].get(codec)
                if not anchor or not test:
                    missing = anchors.REFERENCE_ANCHOR if not anchor else codec
                    per_seq[name] = bdrate.BDRate(None, f"no {missing} results")
                    continue
                per_seq[name] = bdrate.bd_rate(
                    [p["bpp"] for p in anchor],
                    [p[metric] for p in anchor],
                    [p["bpp"] for p in test],
                    [p[metric] for p in test],
                )
            row = {name: value.to_json() for name, value in per_seq.items()}
            row["average"] = bdrate.average(list(per_seq.values())).to_json()
            table[metric][codec] = row
    return table


def run_evaluation(
    config: EvalConfig,
    out_dir: Path,
    options: EvalOptions,
    *,
    work_dir: Path | None = None,
    log: Log = _stderr_log,
) -> dict:
    """Run everything and return the results record (see :mod:`canfvc_codec.eval.report`)."""
    codecs = [anchors.ANCHORS[name] for name in options.anchors]
    ffmpeg = anchors.find_ffmpeg(tuple(c.encoder for c in codecs)) if codecs else None
    threads = canfvc_threads(options, os.cpu_count())
    canfvc = CanfvcCommand(
        options.python,
        options.model,
        options.device,
        threads=threads,
        refine=options.refine,
        intra_coder=options.intra_coder,
    )
    canfvc_status: dict = {"status": "not run", "reason": "disabled by the options"}
    if options.run_canfvc:
        try:
            canfvc.check()
            # the intra choice every point is coded with (CanfvcCommand.encode)
            canfvc_status = {
                "status": "ok",
                "intra_choice": DEFAULT_INTRA_CHOICE,
                "intra_lambda_factor": INTRA_LAMBDA_FACTOR,
                **canfvc.intra_record(),
                **options.refine.record(),
            }
        except CanfvcUnavailable as exc:
            canfvc_status = {"status": "skipped", "reason": str(exc)}
            log(f"canfvc skipped: {exc}")

    out_dir.mkdir(parents=True, exist_ok=True)
    temporary = work_dir is None
    work_root = Path(tempfile.mkdtemp(prefix=".work-", dir=out_dir)) if temporary else work_dir
    results: dict = {
        "version": RESULTS_VERSION,
        "config": config.name,
        "config_path": str(config.source) if config.source else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "ffmpeg": anchors.ffmpeg_version(ffmpeg) if ffmpeg else None,
        "anchors": {c.name: c.description for c in codecs},
        "canfvc": canfvc_status,
        "canfvc_jobs": {"jobs": options.jobs, "threads": threads},  # timings share the CPU
        "sequences": {},
    }
    try:
        for spec in config.sequences:
            seq_dir = work_root / spec.name
            log(f"{spec.name}: reading {spec.path.name}")
            prepared = prepare_sequence(spec, seq_dir, options.max_frames)
            record: dict = {
                "source": str(spec.path),
                "start": spec.start,
                "downscale": spec.downscale,
                "frames": prepared.frames,
                "width": prepared.info.width,
                "height": prepared.info.height,
                "fps": str(prepared.info.fps),
                "gop": spec.gop,
                "bit_depth": prepared.info.bit_depth,
                "codecs": {},
                "skipped": {},
            }
            for codec in codecs:
                qps = options.qps if options.qps is not None else codec.default_qps
                points = []
                try:
                    for qp in qps:
                        log(f"{spec.name}: {codec.name} qp {qp}")
                        points.append(run_anchor(codec, prepared, qp, seq_dir, ffmpeg).to_json())
                except anchors.AnchorError as exc:
                    record["skipped"][codec.name] = str(exc)
                    log(f"{spec.name}: {codec.name} skipped: {exc}")
                    continue
                record["codecs"][codec.name] = points
            if canfvc_status["status"] == "ok":
                try:
                    coded = run_canfvc_points(
                        canfvc,
                        prepared,
                        options.lambdas,
                        seq_dir,
                        options.jobs,
                        log,
                        options.resume,
                    )
                    model_ids = {model_id for _, model_id in coded if model_id}
                    if len(model_ids) > 1:  # resumed points of another model
                        raise CanfvcUnavailable(
                            f"points of several models ({', '.join(sorted(model_ids))}): "
                            "run again without --resume"
                        )
                    record["codecs"][CANFVC] = [point.to_json() for point, _ in coded]
                    if model_ids:
                        canfvc_status["model_id"] = model_ids.pop()
                except CanfvcUnavailable as exc:
                    record["skipped"][CANFVC] = str(exc)
                    log(f"{spec.name}: canfvc skipped: {exc}")
            elif options.run_canfvc:
                record["skipped"][CANFVC] = canfvc_status["reason"]
            results["sequences"][spec.name] = record
    finally:
        if temporary:
            shutil.rmtree(work_root, ignore_errors=True)
    finalize_canfvc_status(results)
    names = list(dict.fromkeys(c for seq in results["sequences"].values() for c in seq["codecs"]))
    results["bd_rate"] = compute_bd_rates(results["sequences"], names)
    return results
