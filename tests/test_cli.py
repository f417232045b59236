import subprocess
import sys

import numpy as np

from clarifx import cli
from clarifx.imageio import read_image


def test_demo_writes_results_and_measures_a_real_gain(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "lanczos3" in printed and "fast-x2" in printed and "dB" in printed
    comparison = read_image(tmp_path / "comparison.png")
    original_h, original_w = read_image(tmp_path / "upscaled_fast-x2.png").shape[:2]
    assert comparison.shape == (original_h, 3 * original_w + 8, 3)
    assert read_image(tmp_path / "lowres.png").shape[:2] == (original_h // 2, original_w // 2)


def test_demo_figures_rank_the_filters(tmp_path):
    from clarifx import demo

    r = demo.run(tmp_path)
    # On a real photo the sharper filters restore more, and every filter beats nearest neighbour.
    assert r["psnr_box"] < r["psnr_bilinear"] < r["psnr_bicubic"] < r["psnr_lanczos3"]
    assert r["psnr_fast-x2"] > r["psnr_lanczos3"] + 1.0  # the embedded model restores what filters cannot
    assert r["psnr_lanczos3"] > 25.0
    assert r["psnr_restore-x1"] > r["psnr_noisy"] + 2.0  # and removes noise
    assert read_image(tmp_path / "comparison_noise.png").shape == read_image(tmp_path / "comparison.png").shape
    assert r["psnr_rotation_round_trip"] > 30.0
    assert 0.01 < r["grain_std"] < 0.08
    grainy = read_image(tmp_path / "grain.png")
    assert np.std(grainy - read_image(tmp_path / "upscaled_fast-x2.png")) > 0.01


def test_errors_are_one_line_without_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = subprocess.run([sys.executable, "-m", "clarifx.cli", "demo", "--out", str(blocker / "sub")],
                       capture_output=True, text=True)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clarifx: error:") and "file" in lines[0]


def test_closed_pipe_is_quiet(tmp_path):
    r = subprocess.run(f"{sys.executable} -m clarifx.cli demo --out {tmp_path} | head -1", shell=True,
                       capture_output=True, text=True)
    assert r.stdout.startswith("clarifx demo:")
    assert r.stderr == ""
