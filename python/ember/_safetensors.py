"""safetensors images: the body of every model-carrying message (docs/wire-format.md §5).

The format: u64 LE header size N, N bytes of JSON header mapping tensor name to
``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the end of the
header) plus an optional ``"__metadata__": {str: str}``, then the data.

Encoding never builds the whole image: ``encode`` returns the header bytes and one
memoryview per tensor, ready for a vectored socket send or file write. Decoding returns
numpy views into the caller's buffer (writable when the buffer is a bytearray), so a
decoded image costs one buffer, not two. ``TensorSink`` receives an image as it streams
in (a ``_wire.Link`` body sink) straight into one array per tensor, with no whole-image
buffer at all.

    header, views = encode({"w": np.ones((2, 3), np.float32)})
    params = decode(bytearray(header + b"".join(views)))   # {"w": array(...)}

Thread-safety: pure functions; the returned views alias their inputs. A TensorSink
belongs to one reader.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
import tempfile
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple

import numpy as np

# Ember's dtype codes and their little-endian numpy equivalents. BF16 has no numpy
# type: it travels as raw 16-bit words and becomes a torch.bfloat16 tensor.
DTYPES: Dict[str, Optional[np.dtype]] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": None,
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
ITEMSIZE = {code: (2 if dt is None else dt.itemsize) for code, dt in DTYPES.items()}
# numpy (kind, itemsize) -> code
_NUMPY_CODES = {("f", 8): "F64", ("f", 4): "F32", ("f", 2): "F16", ("i", 8): "I64",
                ("i", 4): "I32", ("i", 2): "I16", ("i", 1): "I8", ("u", 1): "U8",
                ("b", 1): "BOOL"}
# Same limit as the reference implementation: a bigger header is an attack, not a model.
MAX_HEADER_SIZE = 100_000_000
METADATA_KEY = "__metadata__"
EMPTY_IMAGE = bytes.fromhex("0800000000000000" "7b7d202020202020")

_U64 = struct.Struct("<Q")


class SafetensorsError(ValueError):
    """A safetensors image or a tensor to encode breaks the format."""


# --- Encoding --------------------------------------------------------------------------

def _torch():
    """torch if the process already imported it: a torch tensor can only exist then, so
    numpy-only scripts never pay torch's import time."""
    return sys.modules.get("torch")


def is_torch_tensor(value: Any) -> bool:
    torch = _torch()
    return torch is not None and isinstance(value, torch.Tensor)


def _torch_to_bytes(name: str, tensor) -> Tuple[str, Tuple[int, ...], np.ndarray]:
    """(code, shape, contiguous numpy array holding the raw little-endian bytes)."""
    torch = _torch()
    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    shape = tuple(t.shape)
    if t.dtype == torch.bfloat16:
        return "BF16", shape, t.view(torch.int16).numpy()
    try:
        arr = t.numpy()
    except TypeError as e:
        raise SafetensorsError(f"tensor '{name}': torch dtype {t.dtype} is not supported "
                               f"(supported: {', '.join(DTYPES)})") from e
    return _numpy_code(name, arr), shape, arr


def _numpy_code(name: str, arr: np.ndarray) -> str:
    code = _NUMPY_CODES.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise SafetensorsError(f"tensor '{name}': dtype {arr.dtype} is not supported "
                               f"(supported: {', '.join(DTYPES)})")
    return code


def _to_raw(name: str, value: Any) -> Tuple[str, Tuple[int, ...], memoryview]:
    """(dtype code, shape, flat byte view of the data in little-endian order)."""
    if is_torch_tensor(value):
        code, shape, arr = _torch_to_bytes(name, value)
    else:
        arr = np.asarray(value)
        code, shape = _numpy_code(name, arr), arr.shape
        if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and sys.byteorder == "big"):
            arr = arr.astype(arr.dtype.newbyteorder("<"))
    flat = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    return code, tuple(int(d) for d in shape), memoryview(flat)


def _check_metadata(metadata: Optional[Mapping]) -> Optional[Dict[str, str]]:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise SafetensorsError("__metadata__ must map str to str")
    return dict(metadata)


def encode(tensors: Mapping[str, Any], metadata: Optional[Mapping[str, str]] = None
           ) -> Tuple[bytes, List[memoryview]]:
    """Returns (header bytes incl. the 8-byte size, [one byte view per tensor]).

    Tensors are laid out in insertion order with no gaps and the JSON header is padded
    with spaces to a multiple of 8, as Ember writes every image. Values may be numpy
    arrays, torch tensors (any device; BF16 included) or anything np.asarray accepts.
    """
    if not isinstance(tensors, Mapping):
        raise SafetensorsError(f"params must be a dict of name -> tensor, got {type(tensors).__name__}")
    entries: Dict[str, Any] = {}
    meta = _check_metadata(metadata)
    if meta:
        entries[METADATA_KEY] = meta
    views, offset = [], 0
    for name, value in tensors.items():
        if not isinstance(name, str) or name == METADATA_KEY:
            raise SafetensorsError(f"tensor name {name!r} is not allowed (names are str, "
                                   f"not '{METADATA_KEY}')")
        code, shape, view = _to_raw(name, value)
        entries[name] = {"dtype": code, "shape": list(shape),
                         "data_offsets": [offset, offset + view.nbytes]}
        offset += view.nbytes
        views.append(view)
    text = json.dumps(entries, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return _U64.pack(len(text)) + text, views


def dumps(tensors: Mapping[str, Any], metadata: Optional[Mapping[str, str]] = None) -> bytes:
    """The whole image as bytes; for small models and tests (``encode`` avoids the copy)."""
    header, views = encode(tensors, metadata)
    return b"".join([header, *views])


def encoded_size(header: bytes, views: Iterable[memoryview]) -> int:
    return len(header) + sum(v.nbytes for v in views)


# --- Header validation -----------------------------------------------------------------

class TensorInfo(NamedTuple):
    """One validated header entry; offsets are relative to the data section."""
    name: str
    dtype: str
    shape: Tuple[int, ...]
    begin: int
    end: int


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise SafetensorsError(f"header names '{dup}' twice")
    return dict(pairs)


def _is_uint(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _parse_entry(name: str, info: Any) -> TensorInfo:
    """Validates one tensor entry; the error names the tensor and the bad field."""
    if not isinstance(info, dict):
        raise SafetensorsError(f"tensor '{name}': entry must be an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in DTYPES:
        raise SafetensorsError(f"tensor '{name}': dtype {dtype!r} is not supported "
                               f"(supported: {', '.join(DTYPES)})")
    if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
        raise SafetensorsError(f"tensor '{name}': shape {shape!r} must be a list of "
                               "non-negative integers")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(_is_uint(o) for o in offsets) or offsets[0] > offsets[1]):
        raise SafetensorsError(f"tensor '{name}': data_offsets {offsets!r} must be "
                               "[begin, end] with 0 <= begin <= end")
    expected = math.prod(shape) * ITEMSIZE[dtype]
    if offsets[1] - offsets[0] != expected:
        raise SafetensorsError(f"tensor '{name}': data_offsets span {offsets[1] - offsets[0]} "
                               f"bytes but {dtype}{shape} needs {expected}")
    return TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1])


def _check_layout(tensors: List[TensorInfo], data_len: int) -> None:
    """Tensors must tile the data section exactly: no gap, no overlap, nothing after.
    This is what the reference implementation enforces, and it bounds every offset."""
    pos = 0
    for t in sorted(tensors, key=lambda t: (t.begin, t.end)):
        if t.begin != pos:
            what = "overlaps the previous tensor" if t.begin < pos else "leaves a gap before it"
            raise SafetensorsError(f"tensor '{t.name}' starts at data offset {t.begin}, "
                                   f"expected {pos}: it {what}")
        pos = t.end
    if pos != data_len:
        raise SafetensorsError(f"tensors cover {pos} data bytes but the image has {data_len} "
                               "(truncated or trailing bytes)")


def parse_header(text: bytes, data_len: int) -> Tuple[List[TensorInfo], Dict[str, str]]:
    """Validates the JSON header against a data section of `data_len` bytes."""
    if not text.startswith(b"{"):
        raise SafetensorsError("header must start with '{'")
    try:
        obj = json.loads(text.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"header is not UTF-8 JSON: {e}") from None
    if not isinstance(obj, dict):
        raise SafetensorsError("header must be a JSON object")
    metadata = obj.pop(METADATA_KEY, None)
    if metadata is not None:
        _check_metadata(metadata)
    tensors = [_parse_entry(name, info) for name, info in obj.items()]
    _check_layout(tensors, data_len)
    return tensors, metadata or {}


def _header_size(prefix, total_len: int) -> int:
    """N from the first 8 bytes, checked against the limit and the image size."""
    if total_len < 8:
        raise SafetensorsError(f"image is {total_len} bytes; a safetensors image starts "
                               "with an 8-byte header size")
    (n,) = _U64.unpack_from(prefix)
    if n > MAX_HEADER_SIZE:
        raise SafetensorsError(f"header size {n} exceeds the limit {MAX_HEADER_SIZE}")
    if 8 + n > total_len:
        raise SafetensorsError(f"header size {n} exceeds the {total_len - 8} bytes after "
                               "the size field (truncated image?)")
    return n


# --- Decoding --------------------------------------------------------------------------

def _torch_for_bf16(name: str):
    try:
        import torch
    except ImportError:
        raise SafetensorsError(f"tensor '{name}' is BF16, which numpy cannot represent; "
                               "install torch to decode it") from None
    return torch


def _bf16(buf, offset: int, shape: Tuple[int, ...], name: str):
    torch = _torch_for_bf16(name)
    words = np.frombuffer(buf, dtype="<i2", count=math.prod(shape), offset=offset)
    if not words.flags.writeable:
        words = words.copy()  # torch.from_numpy warns on read-only memory
    return torch.from_numpy(words).view(torch.bfloat16).reshape(shape)


def as_torch(arr):
    """A torch tensor sharing `arr`'s memory when possible (copy if read-only)."""
    import torch
    if isinstance(arr, torch.Tensor):
        return arr
    if not arr.flags.writeable:
        arr = arr.copy()
    return torch.from_numpy(arr)


def decode_with_metadata(buf, to_torch: bool = False) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """(name -> array view into `buf`, metadata). Pass a bytearray for writable arrays.

    BF16 tensors always come back as torch.bfloat16; with `to_torch` every tensor does.
    """
    n = _header_size(buf[:8], len(buf))
    start = 8 + n
    infos, metadata = parse_header(bytes(buf[8:start]), len(buf) - start)
    out: Dict[str, Any] = {}
    for t in infos:
        if t.dtype == "BF16":
            out[t.name] = _bf16(buf, start + t.begin, t.shape, t.name)
            continue
        arr = np.frombuffer(buf, dtype=DTYPES[t.dtype], count=math.prod(t.shape),
                            offset=start + t.begin).reshape(t.shape)
        out[t.name] = as_torch(arr) if to_torch else arr
    return out, metadata


def decode(buf, to_torch: bool = False) -> Dict[str, Any]:
    """name -> array view into `buf` (see decode_with_metadata)."""
    return decode_with_metadata(buf, to_torch)[0]


class TensorSink:
    """Receives an image as it streams in, straight into one new array per tensor.

    The body sink of ``_wire.Link.request(..., sink=TensorSink())`` (see
    ``_wire.BodySink``): the 8-byte size and the JSON header land in small buffers; once
    the header is in, it is validated exactly as ``decode`` validates it (size limit,
    tensors tiling the ``body_size - 8 - N`` data bytes) and one array per tensor is
    allocated (``np.empty``; BF16 as a torch.bfloat16 tensor over int16 words, as
    ``decode`` returns it; with `to_torch` every tensor is ``torch.from_numpy`` of its
    array). Every later body byte lands in its tensor's bytes, so each tensor owns its
    memory: dropping one frees it, and nothing is held twice. The tiling rule leaves no
    byte between tensors.

    ``finish()`` returns (name -> array or tensor in header order, metadata); arrays are
    writable. Errors are SafetensorsError, raised as soon as the bytes that show them
    have arrived (an oversized header before anything is allocated for it).

    `recycle` (name -> numpy array nobody else references, e.g. last round's tensors the
    script let go of) are filled instead of new arrays when name, dtype and shape match:
    no fresh pages to fault in and zero. ``arrays`` maps each name to the numpy array
    its bytes landed in (under a torch tensor, the array it shares memory with).
    """

    def __init__(self, to_torch: bool = False, recycle: Optional[Dict[str, np.ndarray]] = None):
        if to_torch:
            import torch  # noqa: F401  (fails here, before anything is received)
        self.to_torch = to_torch
        self._recycle = dict(recycle or {})
        self.arrays: Dict[str, np.ndarray] = {}
        self._size = -1                  # body_size, from begin()
        self._pos = 0                    # body bytes handed out (and so received)
        self._prefix = bytearray(8)      # the u64 header size
        self._header: Optional[bytearray] = None   # the JSON header, until parsed
        self._data_start = -1            # 8 + N once the prefix is in
        self._segments: List[Tuple[int, int, memoryview]] = []  # (begin, end, bytes) by offset
        self._seg = 0                    # index of the segment holding _pos
        self._out: Optional[Tuple[Dict[str, Any], Dict[str, str]]] = None

    def begin(self, body_size: int) -> None:
        if body_size < 8:
            _header_size(b"", body_size)  # raises: too short for the size field
        self._size = body_size

    def views(self, offset: int, n: int) -> List[memoryview]:
        """Writable byte views for the body bytes from `offset` (all earlier bytes have
        arrived): at most `n` bytes, and never past the end of the size field or the
        header, whose content decides where the following bytes go."""
        if offset != self._pos or n <= 0 or offset + n > self._size:
            raise ValueError(f"TensorSink.views({offset}, {n}) out of order: {self._pos} "
                             f"of {self._size} body bytes handed out")
        self._advance()
        if offset < 8:
            buf, base, stop = self._prefix, 0, 8
        elif self._out is None:
            buf, base, stop = self._header, 8, self._data_start
        else:
            return self._data_views(offset, offset + n)
        take = min(n, stop - offset)
        self._pos += take
        return [memoryview(buf)[offset - base:offset - base + take]]

    def finish(self) -> Tuple[Dict[str, Any], Dict[str, str]]:
        if self._size < 0:
            raise ValueError("TensorSink.finish() before begin()")
        if self._pos < self._size:
            raise SafetensorsError(f"safetensors body ended after {self._pos} of its "
                                   f"{self._size} bytes")
        self._advance()  # an image without tensor data is complete with its header
        out, self._out, self._segments = self._out, None, []
        return out

    def _advance(self) -> None:
        """Parses the size field, then the header, once their bytes are all in."""
        if self._data_start < 0 and self._pos >= 8:
            n = _header_size(self._prefix, self._size)  # limit checks before allocating
            self._header, self._data_start = bytearray(n), 8 + n
        if self._out is None and self._header is not None and self._pos >= self._data_start:
            text, self._header = bytes(self._header), None
            self._allocate(*parse_header(text, self._size - self._data_start))

    def _allocate(self, infos: List[TensorInfo], metadata: Dict[str, str]) -> None:
        bf16 = [t.name for t in infos if t.dtype == "BF16"]
        torch = _torch_for_bf16(bf16[0]) if bf16 else None
        out: Dict[str, Any] = {}
        for t in infos:
            if t.dtype == "BF16":
                raw = self._array(t.name, (math.prod(t.shape),), np.dtype("<i2"))
                out[t.name] = torch.from_numpy(raw).view(torch.bfloat16).reshape(t.shape)
            else:
                raw = self._array(t.name, tuple(t.shape), np.dtype(DTYPES[t.dtype]))
                out[t.name] = as_torch(raw) if self.to_torch else raw
            self.arrays[t.name] = raw
            if t.end > t.begin:
                self._segments.append((self._data_start + t.begin, self._data_start + t.end,
                                       memoryview(raw.reshape(-1).view(np.uint8))))
        self._segments.sort(key=lambda seg: seg[0])
        self._recycle = {}
        self._out = (out, metadata)

    def _array(self, name: str, shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        old = self._recycle.pop(name, None)
        if old is not None and old.shape == shape and old.dtype == dtype and old.flags.writeable \
                and old.flags.c_contiguous and old.base is None:
            return old
        return np.empty(shape, dtype)

    def _data_views(self, offset: int, end: int) -> List[memoryview]:
        views = []
        while offset < end:  # the segments tile the data section (parse_header)
            begin, stop, buf = self._segments[self._seg]
            if offset >= stop:
                self._seg += 1
                continue
            take = min(stop, end) - offset
            views.append(buf[offset - begin:offset - begin + take])
            offset += take
        self._pos = end
        return views


# --- Files -----------------------------------------------------------------------------

def read_file_header(path: str) -> Tuple[List[TensorInfo], Dict[str, str]]:
    """Validates a file's header against its size without reading the data, e.g. to
    check an initial checkpoint before it is bundled into a job."""
    with open(path, "rb") as f:
        total = os.fstat(f.fileno()).st_size
        n = _header_size(f.read(8), total)
        return parse_header(f.read(n), total - 8 - n)


def load_file(path: str, to_torch: bool = False) -> Dict[str, Any]:
    """Reads a file into one bytearray and decodes it (writable views)."""
    with open(path, "rb") as f:
        buf = bytearray(os.fstat(f.fileno()).st_size)
        view, got = memoryview(buf), 0
        while got < len(buf):
            n = f.readinto(view[got:])
            if not n:
                raise SafetensorsError(f"{path}: file shrank while reading")
            got += n
    try:
        return decode(buf, to_torch)
    except SafetensorsError as e:
        raise SafetensorsError(f"{path}: {e}") from None


def save_file(tensors: Mapping[str, Any], path: str,
              metadata: Optional[Mapping[str, str]] = None) -> str:
    """Writes an image tensor by tensor, atomically (temp file + rename)."""
    header, views = encode(tensors, metadata)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".safetensors")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            for view in views:
                f.write(view)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
