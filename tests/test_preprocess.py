"""Frame resizing shared by training, evaluation and labelling."""

import numpy as np

from headway.perception.preprocess import resize_frames


def test_resize_keeps_content_and_skips_frames_already_at_size():
    frames = np.zeros((2, 64, 64, 3), np.uint8)
    frames[:, :32] = 200  # top half bright
    small = resize_frames(frames, 16)
    assert small.shape == (2, 16, 16, 3) and small.dtype == np.uint8
    assert small[:, :8].min() == 200 and small[:, 8:].max() == 0
    assert resize_frames(small, 16) is small
