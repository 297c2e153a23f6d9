"""TensorSink: a safetensors image received in pieces, straight into one array per tensor."""

import itertools
import random
import struct

import numpy as np
import pytest

from ember import _safetensors as st
from ember._safetensors import SafetensorsError, TensorSink

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")


def feed(sink, image, cuts=(), body_size=None):
    """Plays a link: begin, then one "DATA frame" per piece of `image` split at `cuts`,
    each read through as many views() calls as the sink wants; then finish."""
    sink.begin(len(image) if body_size is None else body_size)
    bounds = [0, *sorted(cuts), len(image)]
    pos = 0
    for end in bounds[1:]:
        while pos < end:
            views = sink.views(pos, end - pos)
            assert views and sum(v.nbytes for v in views) <= end - pos
            for v in views:
                assert not v.readonly and v.format == "B" and v.ndim == 1
                v[:] = image[pos:pos + v.nbytes]
                pos += v.nbytes
    return sink.finish()


def _raw(tensor):
    """Bytes of an array or torch tensor (BF16 as its int16 words)."""
    if torch is not None and isinstance(tensor, torch.Tensor):
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.view(torch.int16)
        tensor = tensor.numpy()
    return tensor


def assert_same(got, want):
    """Same names in the same order, dtypes, shapes and bytes."""
    assert list(got) == list(want)
    for name in want:
        g, w = got[name], want[name]
        assert type(g) is type(w) and g.dtype == w.dtype and tuple(g.shape) == tuple(w.shape), name
        np.testing.assert_array_equal(_raw(g), _raw(w), err_msg=name)


def assert_own_memory(params):
    """Every tensor has a buffer of its own, not a slice of one shared body: a numpy
    array's base chain ends in an array that owns exactly its bytes, and no two tensors
    overlap or sit back to back (separate allocations never do). All are writable."""
    arrays = {k: _raw(v) for k, v in params.items()}
    spans = []
    for name, arr in arrays.items():
        assert arr.flags.writeable, name
        root = arr
        while isinstance(root.base, np.ndarray):
            root = root.base
        if root.base is not None:  # not a numpy owner: only torch's own numpy() view
            assert torch is not None and isinstance(root.base, torch.Tensor), \
                f"{name} is a view of a {type(root.base).__name__}"
        else:
            assert root.nbytes == arr.nbytes, f"{name} is a view of a larger buffer"
        if arr.nbytes:
            start = arr.__array_interface__["data"][0]
            spans.append((start, start + arr.nbytes, name))
    for (a0, a1, a), (b0, b1, b) in itertools.combinations(sorted(spans), 2):
        assert a1 < b0, f"'{a}' and '{b}' share one buffer"
    for (a, x), (b, y) in itertools.combinations(arrays.items(), 2):
        assert not np.shares_memory(x, y), (a, b)


SMALL = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([-1, 7], np.int64),
         "s": np.array(2.5, np.float64)}


def test_every_byte_boundary_of_a_small_model():
    image = st.dumps(SMALL, {"format": "np"})
    want = st.decode_with_metadata(bytearray(image))
    for cut in range(1, len(image)):
        assert_same(feed(TensorSink(), image, [cut])[0], want[0])
    got, meta = feed(TensorSink(), image, range(1, len(image)))  # one byte per frame
    assert_same(got, want[0]) and meta == {"format": "np"} == want[1]


def _mixed_model():
    model = {
        "f32": np.linspace(-1, 1, 3000, dtype=np.float32).reshape(3, 1000, 1)[:, :997],
        "f16": np.arange(513, dtype=np.float16),
        "i64": np.arange(-40, 41, dtype=np.int64).reshape(9, 9),
        "bool": np.arange(77) % 3 == 0,
        "u8": np.arange(250, dtype=np.uint8),
        "scalar": np.array(-3, np.int32),
        "empty": np.zeros((4, 0, 2), np.float64),
        "i8": np.array([-128, 0, 127], np.int8),
    }
    if torch is not None:
        model["bf16"] = torch.linspace(-4, 4, 129, dtype=torch.bfloat16).reshape(3, 43)
        model["bf16_scalar"] = torch.tensor(1.5, dtype=torch.bfloat16)
        model["bf16_empty"] = torch.zeros(0, dtype=torch.bfloat16)
    return model


@pytest.mark.parametrize("to_torch", [False, pytest.param(True, marks=needs_torch)])
def test_random_splits_of_a_model_with_many_dtypes(to_torch):
    image = st.dumps(_mixed_model(), {"round": "3"})
    want, want_meta = st.decode_with_metadata(bytearray(image), to_torch=to_torch)
    rng = random.Random(1234)
    for i in range(60):
        cuts = rng.sample(range(1, len(image)), rng.choice([1, 2, 5, 20, 200]))
        got, meta = feed(TensorSink(to_torch=to_torch), image, cuts)
        assert_same(got, want)
        assert meta == want_meta
        assert_own_memory(got)


def test_each_tensor_owns_its_memory_and_is_writable():
    image = st.dumps(_mixed_model())
    got, _ = feed(TensorSink(), image, [100, 1000])
    assert_own_memory(got)
    assert all(got[k].base is None for k in got if isinstance(got[k], np.ndarray))
    got["i64"][...] = 0  # writing one tensor leaves the others alone
    assert got["u8"].tolist() == list(range(250)) and got["scalar"] == -3


@needs_torch
def test_torch_tensors_share_memory_with_their_own_array_only():
    image = st.dumps({"a": np.ones(3, np.float32), "b": np.zeros(3, np.float32)})
    got, _ = feed(TensorSink(to_torch=True), image)
    assert all(isinstance(t, torch.Tensor) for t in got.values())
    got["a"] += 1
    assert got["a"].tolist() == [2, 2, 2] and got["b"].tolist() == [0, 0, 0]
    assert got["a"].data_ptr() != got["b"].data_ptr()


def test_empty_model_and_a_model_of_empty_tensors():
    assert feed(TensorSink(), st.EMPTY_IMAGE) == ({}, {})
    got, _ = feed(TensorSink(), st.dumps({"e": np.zeros(0, np.int16), "z": np.zeros((0, 3))}))
    assert got["e"].shape == (0,) and got["z"].shape == (0, 3)


# --- errors --------------------------------------------------------------------------------

def test_a_body_that_ends_early_is_an_error_at_finish():
    image = st.dumps(SMALL)
    for keep in (0, 5, 8, 20, len(image) - 1):  # in the size field, header, data
        with pytest.raises(SafetensorsError, match=f"ended after {keep} of its {len(image)} bytes"):
            feed(TensorSink(), image[:keep], body_size=len(image))


def test_an_oversized_header_is_refused_before_anything_is_allocated():
    prefix = struct.pack("<Q", st.MAX_HEADER_SIZE + 1)
    sink = TensorSink()
    sink.begin(1 << 40)
    sink.views(0, 8)[0][:] = prefix
    with pytest.raises(SafetensorsError, match="header size 100000001 exceeds the limit 100000000"):
        sink.views(8, 1 << 20)
    assert sink._header is None and sink._segments == []


def test_a_header_longer_than_the_body_is_refused():
    sink = TensorSink()
    with pytest.raises(SafetensorsError, match="header size 100 exceeds the 12 bytes after "
                                               "the size field"):
        feed(sink, struct.pack("<Q", 100) + b"{}" + b" " * 10)


@pytest.mark.parametrize("extra", [-4, 4])
def test_data_extent_disagreeing_with_body_size_is_refused(extra):
    image = st.dumps(SMALL)
    body = image[:extra] if extra < 0 else image + bytes(extra)
    want = len(image) - len(st.encode(SMALL)[0])
    with pytest.raises(SafetensorsError, match=f"tensors cover {want} data bytes but the image "
                                               f"has {want + extra}"):
        feed(TensorSink(), body)


def _padded(header):
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header


@pytest.mark.parametrize("body, message", [
    (b"\x08\x00\x00", "image is 3 bytes; a safetensors image starts with an 8-byte header size"),
    (struct.pack("<Q", 6) + b"[1, 2]", "must start with '{'"),
    (struct.pack("<Q", 4) + b"{nop", "not UTF-8 JSON"),
    (struct.pack("<Q", 0), "must start with '{'"),
    (_padded(b'{"w":{"dtype":"U16","shape":[1],"data_offsets":[0,2]}}') + bytes(2),
     "dtype 'U16' is not supported"),
    (_padded(b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}') + bytes(12),
     "leaves a gap"),
    (_padded(b'{"a":1,"a":2}'), "names 'a' twice"),
])
def test_malformed_images_give_the_errors_of_decode(body, message):
    with pytest.raises(SafetensorsError, match=message):
        feed(TensorSink(), body)
    with pytest.raises(SafetensorsError, match=message):
        st.decode(bytearray(body))


def test_bf16_without_torch_is_a_clear_error(no_torch):
    image = _padded(b'{"b":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}') + bytes(4)
    with pytest.raises(SafetensorsError, match="'b' is BF16.*install torch"):
        feed(TensorSink(), image)
    with pytest.raises(ImportError):
        TensorSink(to_torch=True)  # fails before anything is received


def test_views_must_follow_the_bytes_handed_out():
    sink = TensorSink()
    sink.begin(100)
    sink.views(0, 3)
    with pytest.raises(ValueError, match="out of order"):
        sink.views(0, 3)
    with pytest.raises(ValueError, match="out of order"):
        sink.views(3, 98)
    with pytest.raises(ValueError, match="before begin"):
        TensorSink().finish()
