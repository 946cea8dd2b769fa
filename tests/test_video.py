"""Video through `stylecast stylize`: frames, rate, size, duration and audio kept; flicker measured."""

import json

import av
import numpy as np
import pytest

from stylecast.benchmarks.media.synthetic import moving_frames, still_frames, write_video
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.stylizer import Stylizer
from stylecast.runtime.temporal import FlickerMeter, InputHold, TemporalBlend
from stylecast.runtime.video import stylize_video

from .conftest import run_cli


def _probe(path):
    with av.open(str(path)) as box:
        video = box.streams.video[0]
        frames = sum(1 for _ in box.decode(video))
        audio = box.streams.audio[0].codec_context.name if box.streams.audio else None
        duration = float(box.duration) / av.time_base if box.duration else 0.0
        return {"frames": frames, "fps": float(video.average_rate), "size": (video.width, video.height),
                "audio": audio, "duration": duration}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, moving_frames(24), fps=12)
    return path


def test_video_keeps_frames_rate_size_and_audio(tiny_onnx, clip, tmp_path):
    out = tmp_path / "styled.mp4"
    before = clip.read_bytes()
    result = run_cli("stylize", str(clip), "--model", str(tiny_onnx), "--out", str(out), "--video-batch", "4")
    assert result.returncode == 0, result.stderr
    got, want = _probe(out), _probe(clip)
    assert got["frames"] == want["frames"] == 24
    assert got["fps"] == pytest.approx(12) and got["size"] == (64, 48)
    assert got["audio"] == "aac" and abs(got["duration"] - want["duration"]) < 0.15
    report = json.loads((tmp_path / "styled.mp4.json").read_text())
    assert report["frames"] == 24 and report["audio"] == "aac copied" and report["batch"] == 4
    assert report["flicker"]["ratio"] > 0 and report["model"]["style"] == "tiny" and 0 < report["backend_busy"] <= 1
    assert "flicker ratio" in result.stderr and "1 stylized" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["styled.mp4", "styled.mp4.json"]  # no .part left
    assert clip.read_bytes() == before


def test_audio_the_container_cannot_hold_is_reencoded(tiny_onnx, tmp_path):
    source = tmp_path / "odd.mkv"
    write_video(source, moving_frames(6, height=47, width=63), fps=10, audio="pcm_s16le")
    out_dir = tmp_path / "out"
    result = run_cli("stylize", str(source), "--model", str(tiny_onnx), "--out", str(out_dir / "odd.mp4"))
    assert result.returncode == 0, result.stderr
    got = _probe(out_dir / "odd.mp4")
    assert got["frames"] == 6 and got["size"] == (63, 47) and got["audio"] == "aac"
    assert "re-encoded to aac" in json.loads((out_dir / "odd.mp4.json").read_text())["audio"]


def test_rotated_video_is_stylized_upright(tiny_onnx, tmp_path):
    source = tmp_path / "portrait.mp4"
    write_video(source, moving_frames(4), fps=8, audio=None, rotation=90)
    report = stylize_video(source, tmp_path / "up.mp4", Stylizer(tiny_onnx).stylize_batch)
    assert report.rotation_applied == 90 and report.audio == "none"
    assert _probe(tmp_path / "up.mp4")["size"] == (48, 64)  # 64x48 stored, shown (and now stored) as 48x64


def test_video_into_a_folder_and_type_mismatch(tiny_onnx, clip, tmp_path):
    result = run_cli("stylize", str(clip), "--model", str(tiny_onnx), "--out", str(tmp_path / "folder"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "folder" / "clip.tiny.mp4").is_file()
    wrong = run_cli("stylize", str(clip), "--model", str(tiny_onnx), "--out", str(tmp_path / "still.png"))
    assert wrong.returncode == 2 and "clip.mp4 is a video" in wrong.stderr


def test_bad_video_is_one_clear_error(tiny_onnx, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing else")
    with pytest.raises(StylecastError, match="bad.mp4: not a video"):
        stylize_video(bad, tmp_path / "o.mp4", Stylizer(tiny_onnx).stylize_batch)
    assert not list(tmp_path.glob("o.mp4*")) and not list(tmp_path.glob(".*part"))


def test_disk_full_while_encoding_leaves_nothing(tiny_onnx, clip, tmp_path, monkeypatch):
    import errno

    from stylecast.runtime import video

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(video, "_write_audio", full)
    with pytest.raises(StylecastError, match="No space left"):
        stylize_video(clip, tmp_path / "o.mp4", Stylizer(tiny_onnx).stylize_batch)
    assert list(tmp_path.iterdir()) == []


def test_flicker_meter_and_temporal_blend():
    rng = np.random.default_rng(0)
    still = np.full((32, 32, 3), 120, np.uint8)
    meter, calm, blend = FlickerMeter(), FlickerMeter(), TemporalBlend(0.7)
    for _ in range(20):
        jittery = np.clip(still.astype(int) + rng.integers(-20, 21, still.shape), 0, 255).astype(np.uint8)
        meter.add(still + (rng.random(still.shape) < 0.5), jittery)  # input changes by < 1 level on average
        calm.add(still, blend(still, jittery))
    noisy = meter.summary()
    assert noisy["ratio"] > 10  # the "network" adds far more change than the input had
    assert calm.summary()["output_mean_abs_diff"] < 0.5 * noisy["output_mean_abs_diff"]
    moving = TemporalBlend(0.7)
    moving(still, still)
    jump = np.full_like(still, 250)
    assert np.array_equal(moving(jump, jump), jump)  # where the input changed a lot, nothing is smeared
    with pytest.raises(StylecastError, match="temporal-blend"):
        TemporalBlend(1.0)


def test_temporal_blend_lowers_flicker_on_real_model(tiny_onnx, clip, tmp_path):
    stylizer = Stylizer(tiny_onnx)
    plain = stylize_video(clip, tmp_path / "a.mp4", stylizer.stylize_batch)
    smooth = stylize_video(clip, tmp_path / "b.mp4", stylizer.stylize_batch, temporal_blend=0.6)
    assert smooth.flicker["ratio"] < plain.flicker["ratio"]
    assert smooth.frames == plain.frames == 24


def test_input_hold_passes_a_pixel_only_once_it_moves_past_the_band():
    start = np.full((4, 6, 3), 100, np.uint8)
    hold = InputHold(2.0)
    assert np.array_equal(hold(start), start)
    nudged = start.copy()
    nudged[0, 0] = (102, 101, 100)  # within the band in every channel: held
    nudged[1, 1] = (100, 103, 100)  # past it in one channel: the whole pixel passes
    out = hold(nudged)
    assert np.array_equal(out[0, 0], start[0, 0]) and np.array_equal(out[1, 1], nudged[1, 1])
    drift = start.copy()
    drift[0, 0] = (103, 100, 100)  # measured from the held value, so a slow drift passes in steps of the band
    assert np.array_equal(hold(drift)[0, 0], drift[0, 0])
    assert np.array_equal(hold(np.zeros((2, 2, 3), np.uint8)), np.zeros((2, 2, 3), np.uint8))  # a new size restarts
    off = InputHold(0.0)
    assert off(nudged) is nudged
    for bad in (-1.0, 17.0):
        with pytest.raises(StylecastError, match="input-hold"):
            InputHold(bad)


def test_input_hold_steadies_a_still_clip_and_leaves_the_pan_alone(tiny_onnx, clip, tmp_path):
    """On a still camera's clip the held net sees (almost) no change, so the output barely changes; on the moving
    clip every moving pixel passes, so frames and flicker are those of the plain run. The flicker figure compares
    the output with the input as decoded, not as held."""
    stylizer = Stylizer(tiny_onnx)
    photo = np.asarray(moving_frames(1, 96, 128).__next__())
    still = tmp_path / "still.mp4"
    write_video(still, still_frames(photo, 24, 48, 64), fps=12, audio=None)
    plain = stylize_video(still, tmp_path / "a.mp4", stylizer.stylize_batch)
    held = stylize_video(still, tmp_path / "b.mp4", stylizer.stylize_batch, input_hold=4.0, batch=3)
    assert held.input_hold == 4.0 and held.frames == plain.frames == 24
    assert held.flicker["input_mean_abs_diff"] == plain.flicker["input_mean_abs_diff"] > 0
    assert held.flicker["ratio"] < 0.5 * plain.flicker["ratio"]
    assert json.loads((tmp_path / "b.mp4.json").read_text())["input_hold"] == 4.0
    moving = stylize_video(clip, tmp_path / "c.mp4", stylizer.stylize_batch)
    moving_held = stylize_video(clip, tmp_path / "d.mp4", stylizer.stylize_batch, input_hold=2.0)
    assert moving_held.flicker["ratio"] == pytest.approx(moving.flicker["ratio"], rel=0.1)


def test_input_hold_option_is_checked_before_any_work(tiny_onnx, clip, tmp_path):
    done = run_cli("stylize", str(clip), "--model", str(tiny_onnx), "--out", str(tmp_path / "o.mp4"),
                   "--input-hold", "40")
    assert done.returncode != 0 and "--input-hold 40.0 must be in [0, 16]" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "o.mp4").exists()
    done = run_cli("stylize", str(clip), "--model", str(tiny_onnx), "--out", str(tmp_path / "o.mp4"),
                   "--input-hold", "2")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "o.mp4.json").read_text())["input_hold"] == 2.0
