"""WAV reading and checks (`data.read_wav`, `data.load_clip`): resampling, pad/crop, every kind of bad audio."""

import collections
import logging
import struct

import numpy as np
import pytest
import soundfile
from scipy.io import wavfile

from pipelines.speech_commands.data import AudioError, fit_length, load_clip, load_clips, read_wav, resample
from pipelines.speech_commands.data import write_wav as write_wav_16bit
from tests.speech_commands.audio_trees import tone, write_wav


def test_resample_8k_to_16k_keeps_the_pitch(tmp_path):
    path = write_wav(tmp_path / "a.wav", tone(440.0, rate=8000, seconds=1.0), rate=8000)
    clip = load_clip(path)
    assert clip.shape == (16000,) and clip.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(clip))
    assert np.argmax(spectrum) * 16000 / 16000 == pytest.approx(440, abs=2)
    assert resample(np.ones(10, "float32"), 16000, 16000).shape == (10,)


def test_fit_length_pads_both_sides_and_crops_to_the_loudest_window():
    padded = fit_length(np.ones(4, "float32"), 8)
    np.testing.assert_array_equal(padded, [0, 0, 1, 1, 1, 1, 0, 0])
    signal = np.zeros(30, "float32")
    signal[20:25] = 1.0
    cropped = fit_length(signal, 10)
    assert cropped.shape == (10,) and cropped.sum() == 5


def test_long_and_short_clips_become_one_second(tmp_path):
    notes = collections.Counter()
    long = load_clip(write_wav(tmp_path / "long.wav", tone(300, seconds=1.7)), notes=notes)
    short = load_clip(write_wav(tmp_path / "short.wav", tone(300, seconds=0.2)), notes=notes)
    assert long.shape == short.shape == (16000,)
    assert notes == {"cropped": 1, "padded": 1}


def test_stereo_is_mixed_down(tmp_path):
    left, right = tone(300, seconds=1.0), np.zeros(16000, "float32")
    notes = collections.Counter()
    clip = load_clip(write_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1)), notes=notes)
    assert notes["downmixed"] == 1
    np.testing.assert_allclose(clip, left / 2, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.wav", b"", "not a readable WAV file"),
        ("text.wav", b"this is not audio at all, just some text", "not a readable WAV file"),
        ("header.wav", None, "not a readable WAV file"),
        ("truncated.wav", None, "truncated WAV file"),
        ("nosamples.wav", None, "has no samples"),
        ("rate0.wav", None, "WAV header gives a sample rate of 0 Hz"),
        ("rate_huge.wav", None, r"WAV header gives a sample rate of 2147483647 Hz \(expected 1,000 to 768,000 Hz\)"),
        ("rf64_truncated.wav", None, "truncated WAV file"),
    ],
)
def test_bad_files_raise_an_error_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    elif name == "nosamples.wav":
        write_wav(path, np.zeros(0, "float32"))
    elif name == "rate0.wav":
        wavfile.write(path, 0, (tone(300, seconds=0.1) * 32767).astype("int16"))
    elif name == "rate_huge.wav":  # a consistent header: resampling 1 s of it to 16 kHz would need 320 GiB
        wavfile.write(path, 2**31 - 1, (tone(300, seconds=0.1) * 32767).astype("int16"))
    elif name == "rf64_truncated.wav":
        path.write_bytes(_rf64((tone(300, seconds=1.0) * 32767).astype("<i2").tobytes())[:-16000])
    else:
        good = write_wav(tmp_path / "good.wav", tone(300, seconds=1.0)).read_bytes()
        path.write_bytes(good[:30] if name == "header.wav" else good[: len(good) // 2])
    with pytest.raises(AudioError, match=message) as info:
        read_wav(path)
    assert str(path) in str(info.value)


def _rf64(pcm16):
    """A 16 kHz mono RF64 file: the RIFF size is always 0xFFFFFFFF, the real sizes are in `ds64`."""
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    body_size = 4 + 8 + 28 + 8 + 16 + 8 + len(pcm16)
    ds64 = struct.pack("<QQQI", body_size, len(pcm16), len(pcm16) // 2, 0)
    body = b"WAVE" + b"ds64" + struct.pack("<I", 28) + ds64 + b"fmt " + struct.pack("<I", 16) + fmt
    return b"RF64\xff\xff\xff\xff" + body + b"data\xff\xff\xff\xff" + pcm16


def _with_chunk(wav_bytes, chunk_id, payload):
    """The WAV with one more RIFF chunk appended and the RIFF size updated."""
    body = wav_bytes[8:] + chunk_id + len(payload).to_bytes(4, "little") + payload
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def test_metadata_chunks_and_streamed_headers_are_read_but_a_short_file_is_not(tmp_path):
    signal = tone(300, seconds=1.0)
    good = write_wav(tmp_path / "good.wav", signal).read_bytes()
    peak = tmp_path / "peak.wav"
    peak.write_bytes(_with_chunk(good, b"PEAK", bytes(16)))
    streamed = tmp_path / "streamed.wav"  # RIFF and data sizes left at 0xFFFFFFFF by an encoder that cannot seek
    data_at = good.index(b"data")
    streamed.write_bytes(b"RIFF\xff\xff\xff\xff" + good[8 : data_at + 4] + b"\xff\xff\xff\xff" + good[data_at + 8 :])
    rf64 = tmp_path / "rf64.wav"
    rf64.write_bytes(_rf64((signal * 32767).astype("<i2").tobytes()))
    for path in (peak, streamed, rf64):
        rate, samples = read_wav(path)
        assert rate == 16000
        np.testing.assert_allclose(samples, signal, atol=1e-4)
    short = tmp_path / "short.wav"
    short.write_bytes(good[:-1000])
    with pytest.raises(AudioError, match="short.wav: truncated WAV file"):
        read_wav(short)


def _with_riff_size(wav_bytes, size):
    return wav_bytes[:4] + size.to_bytes(4, "little") + wav_bytes[8:]


def test_a_wrong_riff_size_alone_is_not_truncation_but_a_short_data_chunk_is(tmp_path):
    signal = tone(300, seconds=1.0)
    good = write_wav(tmp_path / "good.wav", signal).read_bytes()
    with_list = _with_chunk(good, b"LIST", b"INFOISFT\x06\x00\x00\x00Lavf\x00\x00")
    cases = {
        "file_length.wav": _with_riff_size(good, len(good)),  # the whole file's length: 8 bytes too many
        "eight_short.wav": _with_riff_size(with_list, len(with_list) - 16),  # stops inside the LIST chunk
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        rate, samples = read_wav(tmp_path / name)
        np.testing.assert_allclose(samples, signal, atol=1e-4, err_msg=name)
    short = tmp_path / "short_data.wav"  # RIFF size right for what is there, the data chunk 2 bytes short
    cut = good[:-2]
    short.write_bytes(_with_riff_size(cut, len(cut) - 8))
    with pytest.raises(AudioError, match="short_data.wav: truncated WAV file .the data chunk holds 31,998 of 32,000"):
        read_wav(short)


@pytest.mark.parametrize("channels", [1, 2])
def test_a_streamed_file_that_ends_mid_frame_keeps_its_whole_frames(tmp_path, channels):
    signal = np.stack([tone(300, seconds=0.5), tone(500, seconds=0.5)], axis=1)[:, :channels].squeeze()
    good = write_wav(tmp_path / "good.wav", signal).read_bytes()
    data_at = good.index(b"data")
    streamed = b"RIFF\xff\xff\xff\xff" + good[8 : data_at + 4] + b"\xff\xff\xff\xff" + good[data_at + 8 :]
    path = tmp_path / "killed_recording.wav"
    path.write_bytes(streamed + b"\x01" * (2 * channels - 1))  # the recorder stopped inside a frame
    rate, samples = read_wav(path)
    assert rate == 16000 and samples.shape == signal.shape
    np.testing.assert_allclose(samples, signal, atol=1e-4)


def test_float_wav_with_nan_samples_is_refused(tmp_path):
    samples = tone(300, seconds=1.0)
    samples[100] = np.nan
    path = tmp_path / "nan.wav"
    wavfile.write(path, 16000, samples)
    with pytest.raises(AudioError, match="nan.wav: WAV file holds NaN or infinite samples"):
        read_wav(path)
    assert load_clips([path])[2]["skipped_unreadable"] == 1


def test_load_clips_skips_bad_and_silent_files_and_logs_the_count(tmp_path, caplog):
    good = [write_wav(tmp_path / f"good{i}.wav", tone(300 + 50 * i)) for i in range(3)]
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    silent = write_wav(tmp_path / "silent.wav", np.zeros(16000, "float32"))
    paths = [good[0], empty, good[1], silent, good[2]]
    with caplog.at_level(logging.INFO, logger="pipelines.speech_commands.data"):
        waveforms, kept, notes = load_clips(paths, what="train clips")
    assert waveforms.shape == (3, 16000)
    np.testing.assert_array_equal(kept, [0, 2, 4])
    assert notes["skipped_unreadable"] == 1 and notes["skipped_silent"] == 1
    assert "skipped 2 bad train clips" in caplog.text and str(empty) in caplog.text and str(silent) in caplog.text
    kept_silent = load_clips(paths, keep_silent=True)[1]
    np.testing.assert_array_equal(kept_silent, [0, 2, 3, 4])


@pytest.mark.parametrize(
    ("subtype", "tolerance"),
    [("PCM_U8", 1 / 128), ("PCM_16", 1 / 32768), ("PCM_24", 1e-6), ("PCM_32", 1e-7), ("FLOAT", 0), ("DOUBLE", 1e-7)],
)
def test_every_sample_format_reads_as_floats_in_full_scale(tmp_path, subtype, tolerance):
    signal = tone(300, seconds=0.1)
    soundfile.write(tmp_path / "clip.wav", signal, 16000, subtype=subtype, format="WAV")
    rate, samples = read_wav(tmp_path / "clip.wav")
    assert rate == 16000 and samples.dtype == np.float32
    np.testing.assert_allclose(samples, signal, rtol=0, atol=tolerance)


def test_audio_of_another_format_is_not_taken_for_a_wav_file(tmp_path):
    path = tmp_path / "clip.wav"
    soundfile.write(path, tone(300, seconds=0.1), 16000, format="FLAC")
    with pytest.raises(AudioError, match=r"clip.wav: not a WAV file \(it holds FLAC"):
        read_wav(path)
    assert load_clips([path])[2]["skipped_unreadable"] == 1


def test_written_clips_read_back(tmp_path):
    signal = np.stack([tone(300, seconds=0.2), tone(500, seconds=0.2)], axis=1)
    write_wav_16bit(tmp_path / "stereo.wav", signal, sample_rate=8000)
    rate, samples = read_wav(tmp_path / "stereo.wav")
    assert rate == 8000 and samples.shape == signal.shape
    np.testing.assert_allclose(samples, signal, atol=1 / 32768)
    assert soundfile.info(str(tmp_path / "stereo.wav")).subtype == "PCM_16"
