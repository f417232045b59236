import numpy as np
import pytest

from clarifx.imageio import ImageIOError, read_image, write_image


def test_png_round_trip_8bit(tmp_path):
    rng = np.random.default_rng()
    image = rng.integers(0, 256, (17, 31, 3)).astype(np.float32) / 255
    write_image(tmp_path / "a.png", image)
    np.testing.assert_allclose(read_image(tmp_path / "a.png"), image, atol=1e-6)


def test_exr_keeps_values_above_one(tmp_path):
    image = np.random.default_rng().random((8, 9, 4)).astype(np.float32) * 8.0
    write_image(tmp_path / "a.exr", image, dtype="float")
    np.testing.assert_array_equal(read_image(tmp_path / "a.exr"), image)


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "keep.unknownformat"
    target.write_bytes(b"precious")
    with pytest.raises(ImageIOError, match="keep.unknownformat"):
        write_image(target, np.zeros((4, 4, 3)))
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.unknownformat"]


def test_unreadable_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ImageIOError, match="broken.png"):
        read_image(bad)
