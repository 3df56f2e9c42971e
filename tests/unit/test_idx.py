import struct

import pytest
import torch

from digitpipe.data.idx import encode_idx, parse_idx, parse_images, parse_labels
from digitpipe.errors import DataError


def test_encoded_images_parse_back_to_the_same_tensor():
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    assert torch.equal(parse_images(encode_idx(images), "x", 28), images)


def test_labels_parse_with_their_values():
    labels = torch.tensor([0, 9, 3], dtype=torch.uint8)
    assert parse_labels(encode_idx(labels), "y", 10).tolist() == [0, 9, 3]


def test_a_label_file_given_as_images_is_rejected_by_its_magic_number():
    labels = encode_idx(torch.zeros(4, dtype=torch.uint8))
    with pytest.raises(DataError, match="bad IDX magic number 0x00000801"):
        parse_images(labels, "train_images", 28)


def test_an_html_page_is_rejected_as_a_bad_header():
    with pytest.raises(DataError, match="bad IDX magic"):
        parse_idx(b"<!DOCTYPE html><html>", "x", 3)


def test_a_file_shorter_than_its_header_declares_is_rejected():
    data = encode_idx(torch.zeros(3, 28, 28, dtype=torch.uint8))
    with pytest.raises(DataError, match=r"declares shape \(3, 28, 28\)"):
        parse_idx(data[:-10], "x", 3)


def test_a_header_cut_short_is_rejected():
    with pytest.raises(DataError, match="truncated IDX header"):
        parse_idx(struct.pack(">HBB", 0, 8, 3) + b"\x00\x00", "x", 3)


def test_images_of_the_wrong_size_are_rejected():
    data = encode_idx(torch.zeros(2, 32, 32, dtype=torch.uint8))
    with pytest.raises(DataError, match=r"images are \(32, 32\), expected \(28, 28\)"):
        parse_images(data, "x", 28)


def test_a_label_outside_the_classes_is_rejected():
    data = encode_idx(torch.tensor([1, 12], dtype=torch.uint8))
    with pytest.raises(DataError, match="label 12 is outside 0..9"):
        parse_labels(data, "y", 10)
