"""The `clarifx` command line. Errors print one line naming the cause (traceback only with --debug)."""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__


def _demo(args) -> int:
    from . import demo

    demo.run(args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clarifx", description="Restore footage: upscale, denoise, repair.")
    parser.add_argument("--version", action="version", version=f"clarifx {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run the main job on the bundled sample and report the measured gain")
    demo.add_argument("--out", default="clarifx-demo", help="folder for the results (default: %(default)s)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("clarifx: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`clarifx demo | head`): stop quietly, like other tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit flush
        return 141
    except (ValueError, OSError) as e:
        if args.debug:
            raise
        print(f"clarifx: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
