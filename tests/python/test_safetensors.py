"""safetensors bodies (spec §5): round trips, the exact layout, strict validation."""

import json
import struct

import numpy as np
import pytest

from ember import _safetensors as st
from ember._safetensors import SafetensorsError

NUMPY_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
                "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
                "BOOL": np.bool_}
SHAPES = [(), (0,), (3,), (2, 3), (2, 0, 4), (1, 1, 1, 5)]


def _sample(dtype, shape):
    n = int(np.prod(shape))
    if dtype is np.bool_:
        return (np.arange(n) % 3 == 0).reshape(shape)
    return (np.arange(n) - n // 2).astype(dtype).reshape(shape)


def _image(tensors, metadata=None):
    header, views = st.encode(tensors, metadata)
    return bytearray(header + b"".join(bytes(v) for v in views))


def independent_read(image):
    """A minimal reader written from the format description alone (json + numpy)."""
    (n,) = struct.unpack("<Q", bytes(image[:8]))
    header = json.loads(bytes(image[8:8 + n]))
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = bytes(image[8 + n + begin:8 + n + end])
        dtype = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
                 "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}[info["dtype"]]
        out[name] = np.frombuffer(raw, dtype=dtype).reshape(info["shape"])
    return out


# --- round trips -------------------------------------------------------------------------

@pytest.mark.parametrize("code", list(NUMPY_DTYPES))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_dtype_and_shape_round_trips(code, shape):
    arr = _sample(NUMPY_DTYPES[code], shape)
    out = st.decode(_image({"t": arr}))
    assert out["t"].dtype == arr.dtype and out["t"].shape == shape
    np.testing.assert_array_equal(out["t"], arr)


def test_many_tensors_keep_insertion_order_and_contiguous_offsets():
    tensors = {"z": np.ones(3, np.float32), "a": np.arange(5, dtype=np.int64),
               "m": np.zeros((), np.float16), "e": np.zeros((0,), np.uint8)}
    image = _image(tensors)
    (n,) = struct.unpack("<Q", image[:8])
    header = json.loads(bytes(image[8:8 + n]))
    assert list(header) == ["z", "a", "m", "e"]
    assert [header[k]["data_offsets"] for k in header] == [[0, 12], [12, 52], [52, 54], [54, 54]]
    assert n % 8 == 0 and bytes(image[8:8 + n]).endswith(b"}" + b" " * (n - len(json.dumps(
        header, separators=(",", ":")))))
    assert len(image) == 8 + n + 54


def test_encoded_image_loads_with_an_independent_reader():
    tensors = {code: _sample(dt, (2, 3)) for code, dt in NUMPY_DTYPES.items()}
    tensors["scalar"] = np.array(2.5)
    tensors["empty"] = np.zeros((0, 3), np.int32)
    out = independent_read(_image(tensors, {"format": "np"}))
    assert list(out) == list(tensors)
    for name, arr in tensors.items():
        assert out[name].dtype == arr.dtype
        np.testing.assert_array_equal(out[name], arr)


def test_empty_model_is_the_16_byte_image_of_the_spec():
    header, views = st.encode({})
    assert header == bytes.fromhex("0800000000000000 7b7d202020202020") and views == []
    assert st.decode(bytearray(st.EMPTY_IMAGE)) == {}


def test_metadata_round_trips_and_comes_first():
    image = _image({"w": np.ones(2)}, {"source": "test"})
    params, meta = st.decode_with_metadata(image)
    assert meta == {"source": "test"} and list(params) == ["w"]
    assert bytes(image[8:24]) == b'{"__metadata__":'


def test_decoded_arrays_are_writable_views_of_a_bytearray():
    image = _image({"w": np.zeros(4, np.float32)})
    w = st.decode(image)["w"]
    w[1] = 7.0
    assert st.decode(image)["w"][1] == 7.0  # same memory
    assert not st.decode(bytes(image))["w"].flags.writeable


def test_encode_views_alias_the_arrays_without_copying():
    arr = np.zeros(1000, np.float64)
    _, views = st.encode({"w": arr})
    arr[0] = 3.0
    assert np.frombuffer(views[0], np.float64)[0] == 3.0


def test_non_contiguous_and_big_endian_arrays_are_written_little_endian():
    strided = np.arange(12, dtype=np.int32).reshape(3, 4)[:, ::2]
    big = np.arange(3, dtype=">f4")
    out = independent_read(_image({"s": strided, "b": big}))
    np.testing.assert_array_equal(out["s"], strided)
    np.testing.assert_array_equal(out["b"], big)


@pytest.mark.parametrize("value", [np.zeros(2, np.uint16), np.zeros(2, np.complex64),
                                   np.array(["a"]), np.array([object()])])
def test_unsupported_dtypes_are_refused_naming_the_tensor(value):
    with pytest.raises(SafetensorsError, match="tensor 'bad'.*not supported"):
        st.encode({"bad": value})


def test_bad_names_are_refused():
    with pytest.raises(SafetensorsError, match="not allowed"):
        st.encode({"__metadata__": np.zeros(1)})
    with pytest.raises(SafetensorsError, match="not allowed"):
        st.encode({1: np.zeros(1)})
    with pytest.raises(SafetensorsError, match="str to str"):
        st.encode({}, {"k": 1})


def test_save_and_load_file(tmp_path):
    path = tmp_path / "m.safetensors"
    st.save_file({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array(True)}, str(path))
    out = st.load_file(str(path))
    np.testing.assert_array_equal(out["a"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert out["b"] == np.array(True) and out["a"].flags.writeable
    infos, meta = st.read_file_header(str(path))
    assert [(i.name, i.dtype, i.shape) for i in infos] == [("a", "F32", (2, 3)), ("b", "BOOL", ())]
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left


def test_load_file_names_the_file_on_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x01")
    with pytest.raises(SafetensorsError, match="bad.safetensors"):
        st.load_file(str(path))


# --- validation ------------------------------------------------------------------------------

def _raw(header_obj_or_text, data=b"", pad=True):
    text = header_obj_or_text if isinstance(header_obj_or_text, bytes) else \
        json.dumps(header_obj_or_text).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return bytearray(struct.pack("<Q", len(text)) + text + data)


def _entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


@pytest.mark.parametrize("image, message", [
    (bytearray(b"\x08\x00\x00"), "starts with an 8-byte header size"),
    (bytearray(struct.pack("<Q", 100) + b"{}"), "exceeds the 2 bytes"),
    (bytearray(struct.pack("<Q", 200_000_000)), "exceeds the limit"),
    (_raw(b"[1, 2]"), "must start with '{'"),
    (_raw(b"{nope"), "not UTF-8 JSON"),
    (_raw(b'{"a": 1, "a": 2}'), "names 'a' twice"),
    (_raw({"w": _entry(dtype="U16", offsets=(0, 4))}, bytes(4)), "dtype 'U16' is not supported"),
    (_raw({"w": _entry(shape=(-1,))}, bytes(8)), "shape"),
    (_raw({"w": _entry(shape=(2.0,))}, bytes(8)), "shape"),
    (_raw({"w": {"dtype": "F32", "shape": [2]}}, bytes(8)), "data_offsets None"),
    (_raw({"w": _entry(offsets=(8, 0))}, bytes(8)), "begin <= end"),
    (_raw({"w": _entry(offsets=(0, 12))}, bytes(12)), "span 12 bytes but F32\\[2\\] needs 8"),
    (_raw({"w": _entry()}, bytes(4)), "cover 8 data bytes but the image has 4"),
    (_raw({"w": _entry()}, bytes(12)), "cover 8 data bytes but the image has 12"),
    (_raw({"w": _entry(offsets=(4, 12))}, bytes(12)), "leaves a gap"),
    (_raw({"a": _entry(), "b": _entry(offsets=(4, 12))}, bytes(12)), "overlaps"),
    (_raw({"__metadata__": {"k": 1}}), "str to str"),
    (_raw({"w": [1]}), "entry must be an object"),
])
def test_malformed_images_are_rejected_with_the_reason(image, message):
    with pytest.raises(SafetensorsError, match=message):
        st.decode(image)


def test_offsets_far_out_of_range_do_not_allocate():
    image = _raw({"w": _entry(shape=(1 << 60,), offsets=(0, 4 << 60))})
    with pytest.raises(SafetensorsError, match="cover"):
        st.decode(image)


def test_unpadded_header_from_other_writers_is_accepted():
    image = _raw({"w": _entry()}, struct.pack("<2f", 1, 2), pad=False)
    assert st.decode(image)["w"].tolist() == [1.0, 2.0]


# --- torch ------------------------------------------------------------------------------------

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")


@needs_torch
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16", "int64",
                                   "int32", "int16", "int8", "uint8", "bool"])
@pytest.mark.parametrize("shape", [(), (0,), (2, 3)], ids=str)
def test_torch_round_trip_every_dtype(dtype, shape):
    t = (torch.arange(int(np.prod(shape))) % 3).reshape(shape).to(getattr(torch, dtype))
    out = st.decode(_image({"t": t}), to_torch=True)["t"]
    assert isinstance(out, torch.Tensor) and out.dtype == t.dtype and tuple(out.shape) == shape
    assert torch.equal(out, t)


@needs_torch
def test_bf16_decodes_to_torch_even_without_to_torch():
    t = torch.tensor([1.5, -2.0, 3.25], dtype=torch.bfloat16)
    image = _image({"t": t, "n": np.ones(2, np.float32)})
    out = st.decode(image)
    assert out["t"].dtype == torch.bfloat16 and torch.equal(out["t"], t)
    assert isinstance(out["n"], np.ndarray)
    (n,) = struct.unpack("<Q", image[:8])
    assert json.loads(bytes(image[8:8 + n]))["t"]["dtype"] == "BF16"


@needs_torch
def test_torch_tensors_with_grad_and_non_contiguous_layout_encode():
    w = torch.arange(12.0, requires_grad=True).reshape(3, 4)
    out = st.decode(_image({"w": w, "t": w.detach().t()}))
    np.testing.assert_array_equal(out["w"], w.detach().numpy())
    np.testing.assert_array_equal(out["t"], w.detach().t().numpy())


@needs_torch
def test_torch_decode_shares_memory_with_the_buffer():
    image = _image({"w": np.zeros(3, np.float32)})
    t = st.decode(image, to_torch=True)["w"]
    t[0] = 5
    assert st.decode(image)["w"][0] == 5


def test_bf16_without_torch_is_a_clear_error(no_torch):
    image = _raw({"b": _entry(dtype="BF16", shape=(2,), offsets=(0, 4))}, bytes(4))
    with pytest.raises(SafetensorsError, match="'b' is BF16.*install torch"):
        st.decode(image)
