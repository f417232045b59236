"""Image sequences (`shot.%04d.exr`, `shot.####.exr`) and single stills as sources and sinks."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from .frame import FootageError, Frame
from .imageio import (_default_channels, _resolve_dtype, _writable, probe_image, read_frame, stored_channels,
                      write_frame)

# %d, %0Nd (printf) or a run of '#', one per digit.
_PLACEHOLDER = re.compile(r"%(?:0(\d+))?d|#+")


class SequencePattern:
    """A frame-numbered file name: `shot.%04d.exr`, `shot.%d.exr`, `shot.####.exr` or `shot.#.exr`."""

    def __init__(self, text: str, prefix: str, padding: int, suffix: str):
        self.text = text
        self.padding = padding
        self._dir = Path(text).parent
        self._prefix = prefix
        self._suffix = suffix
        self._regex = re.compile(rf"{re.escape(prefix)}(-?\d+){re.escape(suffix)}")

    @staticmethod
    def parse(path: str | os.PathLike) -> "SequencePattern | None":
        """The pattern in `path`'s file name; None when it has no frame placeholder."""
        text = os.fspath(path)
        name = Path(text).name
        found = list(_PLACEHOLDER.finditer(name))
        if not found:
            return None
        if len(found) > 1:
            raise ValueError(f"path: {text!r} has more than one frame placeholder")
        m = found[0]
        padding = len(m.group()) if m.group().startswith("#") else int(m.group(1) or 1)
        return SequencePattern(text, name[:m.start()], padding, name[m.end():])

    def path(self, number: int) -> Path:
        """The file of frame `number`; negative frames as printf writes them (`shot.-001.exr` for %04d)."""
        return self._dir / f"{self._prefix}{number:0{self.padding}d}{self._suffix}"

    def scan(self) -> list[int]:
        """Frame numbers present on disk, sorted."""
        try:
            entries = list(os.scandir(self._dir))
        except FileNotFoundError:
            return []
        numbers = []
        for entry in entries:
            m = self._regex.fullmatch(entry.name)
            # Only names this pattern would write: with %04d, "shot.01.exr" and "shot.00001.exr" are other files.
            if m and f"{int(m.group(1)):0{self.padding}d}" == m.group(1) and entry.is_file():
                numbers.append(int(m.group(1)))
        return sorted(numbers)

    def __repr__(self) -> str:
        return f"SequencePattern({self.text!r})"


def _pattern(pattern: str | os.PathLike | SequencePattern) -> SequencePattern:
    if isinstance(pattern, SequencePattern):
        return pattern
    parsed = SequencePattern.parse(pattern)
    if parsed is None:
        raise ValueError(f"pattern: {os.fspath(pattern)!r} has no frame placeholder (%04d or ####)")
    return parsed


def _describe(width: int, height: int, channels: tuple[str, ...]) -> str:
    return f"{width}x{height} {','.join(channels)}"


class SequenceSource:
    """Frames of an image sequence, read one at a time."""

    def __init__(self, pattern: str | os.PathLike | SequencePattern):
        self.pattern = _pattern(pattern)
        numbers = self.pattern.scan()
        if not numbers:
            raise FootageError(f"no frames match {self.pattern.text}")
        present = set(numbers)
        first_info = probe_image(self.pattern.path(numbers[0]), numbers[0])
        self.info = dataclasses.replace(
            first_info, path=self.pattern.text, kind="sequence", first=numbers[0], last=numbers[-1],
            missing=tuple(n for n in range(numbers[0], numbers[-1]) if n not in present),
        )

    def read(self, number: int) -> Frame:
        path = self.pattern.path(number)
        if not path.is_file():
            raise FootageError(f"{self.pattern.text}: frame {number} is missing ({path})")
        frame = read_frame(path, number)
        info = self.info
        if (frame.width, frame.height, frame.channels) != (info.width, info.height, info.channels):
            raise FootageError(
                f"{path}: frame {number} is {_describe(frame.width, frame.height, frame.channels)}, "
                f"the sequence is {_describe(info.width, info.height, info.channels)} (frame {info.first})")
        return frame

    def close(self) -> None:
        """Nothing is held open between reads."""

    def __enter__(self) -> "SequenceSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ImageSource:
    """A single still image as a one-frame clip (frame 1)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.info = probe_image(self.path)

    def read(self, number: int = 1) -> Frame:
        if number != 1:
            raise FootageError(f"{self.path}: frame {number} is missing (a still image holds frame 1 only)")
        return read_frame(self.path, 1)

    def close(self) -> None:
        """Nothing is held open between reads."""

    def __enter__(self) -> "ImageSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_complete(path: Path, number: int, width: int, height: int,
                 channels: tuple[str, ...] | int, dtype: str) -> bool:
    """Whether `path` already holds this frame as this sink would write it, pixels included."""
    if not path.is_file():
        return False
    try:
        info = probe_image(path, number)
        if isinstance(channels, int):   # a count: as many as this format keeps of that many channels
            same_channels = len(info.channels) == len(stored_channels(path, _default_channels(channels)))
        else:
            same_channels = info.channels == stored_channels(path, tuple(channels))
        if not same_channels or (info.width, info.height, info.format.split()[-1]) != (width, height, dtype):
            return False
        read_frame(path, number)   # a truncated or corrupt file decodes with an error
    except FootageError:
        return False
    return True


class SequenceSink:
    """Writes each frame to its own file of an image sequence, atomically."""

    wants_premultiplied = True

    def __init__(self, pattern: str | os.PathLike | SequencePattern, *, dtype: str | None = None,
                 compression: str | None = None):
        self.pattern = _pattern(pattern)
        self.dtype = _resolve_dtype(_writable(self.pattern.path(0)), dtype)
        self.compression = compression

    def path(self, number: int) -> Path:
        return self.pattern.path(number)

    def is_complete(self, number: int, width: int, height: int, channels: tuple[str, ...] | int) -> bool:
        """Resume check: the frame's file exists with this size, channels and dtype, and decodes.

        `channels`: the frame's names or their count; compared with what this format keeps of them.
        """
        return _is_complete(self.path(number), number, width, height, channels, self.dtype)

    def write(self, frame: Frame) -> Path:
        return write_frame(self.path(frame.number), frame, dtype=self.dtype, compression=self.compression)

    def close(self) -> None:
        """Every frame is complete once written."""

    def abort(self) -> None:
        """Frames already written stay; they are whole, and a resumed render reuses them."""

    def __enter__(self) -> "SequenceSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ImageSink:
    """Writes the one frame of a still image, atomically."""

    wants_premultiplied = True

    def __init__(self, path: str | os.PathLike, *, dtype: str | None = None, compression: str | None = None):
        self._path = Path(path)
        self.dtype = _resolve_dtype(_writable(self._path), dtype)
        self.compression = compression
        self._written: int | None = None

    def path(self, number: int = 1) -> Path:
        return self._path

    def is_complete(self, number: int, width: int, height: int, channels: tuple[str, ...] | int) -> bool:
        """Resume check, as SequenceSink.is_complete."""
        return _is_complete(self._path, number, width, height, channels, self.dtype)

    def write(self, frame: Frame) -> Path:
        if self._written is not None:
            raise FootageError(f"{self._path}: an image file holds one frame; "
                               f"got frame {frame.number} after frame {self._written}")
        write_frame(self._path, frame, dtype=self.dtype, compression=self.compression)
        self._written = frame.number
        return self._path

    def close(self) -> None:
        """The file is complete once written."""

    def abort(self) -> None:
        """Nothing to undo: the file appears only whole."""

    def __enter__(self) -> "ImageSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
