"""Frame resizing shared by training, evaluation and labelling."""

import numpy as np
import torch

from headway.perception.preprocess import random_shift, resize_frames


def test_resize_keeps_content_and_skips_frames_already_at_size():
    frames = np.zeros((2, 64, 64, 3), np.uint8)
    frames[:, :32] = 200  # top half bright
    small = resize_frames(frames, 16)
    assert small.shape == (2, 16, 16, 3) and small.dtype == np.uint8
    assert small[:, :8].min() == 200 and small[:, 8:].max() == 0
    assert resize_frames(small, 16) is small


def test_random_shift_moves_each_image_by_its_own_whole_pixel_offset_within_the_pad():
    height, width, pad = 20, 24, 3
    ramp = torch.arange(height * width, dtype=torch.int64).view(1, 1, height, width)
    images = ramp.expand(64, 2, height, width).contiguous()
    torch.manual_seed(0)
    shifted = random_shift(images, pad)
    assert shifted.shape == images.shape and shifted.dtype == images.dtype
    offsets = set()
    for image in shifted:
        # the interior of a shifted ramp differs from the original by dy * width + dx everywhere
        difference = (image[0, pad:-pad, pad:-pad] - ramp[0, 0, pad:-pad, pad:-pad]).unique()
        assert difference.numel() == 1
        dy, dx = divmod(int(difference) + pad * width + pad, width)
        assert abs(dy - pad) <= pad and abs(dx - pad) <= pad
        assert torch.equal(image[0], image[1])  # channels move together
        offsets.add((dy, dx))
    assert len(offsets) > 10  # offsets differ between images
    torch.manual_seed(0)
    assert torch.equal(random_shift(images, pad), shifted)  # seeded: repeatable
    assert random_shift(images, 0) is images


def test_random_shift_moves_a_group_of_images_by_one_offset():
    height, width, pad = 12, 12, 2
    images = torch.arange(height * width, dtype=torch.int64).view(1, 1, height, width).expand(40, 1, height, width).contiguous()
    groups = torch.arange(40) // 4  # ten groups of four images
    torch.manual_seed(1)
    shifted = random_shift(images, pad, groups)
    for group in range(10):
        members = shifted[groups == group]
        assert all(torch.equal(members[0], member) for member in members[1:])  # one offset per group
    assert len({shifted[i].sum().item() for i in range(0, 40, 4)}) > 3  # groups differ
