"""Deflated datasets inflate in bounded steps, whole or not at all."""

import zlib

import pytest

from dicomflow.dicom.inflate import STEP_BYTES, inflate
from dicomflow.errors import InstanceTooLargeError


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def test_a_stream_inflates_whole_within_the_limit() -> None:
    data = bytes(range(256)) * 40_000
    assert inflate(deflated(data), len(data)) == data


def test_past_the_limit_it_stops_within_one_step() -> None:
    reserved: list[int] = []

    def reserve(count: int) -> bool:
        reserved.append(count)
        return True

    with pytest.raises(InstanceTooLargeError, match="maximum_instance_bytes") as raised:
        inflate(deflated(bytes(64 * STEP_BYTES)), 4 * STEP_BYTES, reserve)
    assert raised.value.setting == "maximum_instance_bytes"
    assert sum(reserved) <= 4 * STEP_BYTES


def test_a_refused_reservation_stops_it() -> None:
    with pytest.raises(InstanceTooLargeError, match="maximum_held_bytes") as raised:
        inflate(deflated(bytes(8 * STEP_BYTES)), 1 << 30, lambda count: False)
    assert raised.value.setting == "maximum_held_bytes"


def test_a_stream_cut_short_is_an_error() -> None:
    stream = deflated(bytes(range(256)) * 1000)
    with pytest.raises(zlib.error):
        inflate(stream[: len(stream) // 2], 1 << 30)
