#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (docs/fuzzing.md) from the golden frames.

Reads tests/data/frames/*.bin and writes <fuzz dir>/corpus/<target>/<seed>, in the fuzz
directory of the layer each target tests (TARGET_DIRS). Byte-stream targets
(frame_decoder, stream_assembler, connection) take a split-plan prefix before the
stream (base/fuzz/fuzz_harness.h, PlanSplits): b"\\x00" feeds it in one piece; b"\\x04\\x01\\x07\\x10\\x00"
in chunks of 1, 7, 16 bytes and an empty read, cycled. The high nibble of the first
byte holds target options. Inputs that still break an invariant live in findings/, not
here, until the code is fixed; then they move to regressions/.

Deterministic; rerun after changing the golden frames:
  python3 src/wire/fuzz/make_corpus.py
"""

import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "..")
FRAMES = os.path.join(SRC, "..", "tests", "data", "frames")
TARGET_DIRS = {
    "frame_decoder": os.path.join(SRC, "wire", "fuzz"),
    "message_header": os.path.join(SRC, "wire", "fuzz"),
    "stream_assembler": os.path.join(SRC, "net", "fuzz"),
    "connection": os.path.join(SRC, "net", "fuzz"),
}
HEADER = struct.Struct("<2sBBHHII")  # magic, version, type, flags, reserved, stream, length
WHOLE = b"\x00"
SPLIT = b"\x04\x01\x07\x10\x00"
JSON_TYPES = {1, 2, 4, 8}  # HELLO, HEAD, ABORT, GOAWAY


def frame(ftype, stream_id, payload=b"", flags=0):
    return HEADER.pack(b"EM", 1, ftype, flags, 0, stream_id, len(payload)) + payload


def js(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def split_frames(data):
    """(type, payload) of each whole frame in `data`, read with struct from the spec."""
    out = []
    while len(data) >= HEADER.size:
        _, _, ftype, _, _, _, length = HEADER.unpack_from(data)
        if len(data) < HEADER.size + length:
            break
        out.append((ftype, data[HEADER.size:HEADER.size + length]))
        data = data[HEADER.size + length:]
    return out


def golden():
    cases = {}
    for name in sorted(os.listdir(FRAMES)):
        if name.endswith(".bin"):
            with open(os.path.join(FRAMES, name), "rb") as f:
                data = f.read()
            with open(os.path.join(FRAMES, name[:-4] + ".json")) as f:
                valid = json.load(f)["valid"]
            cases[name[:-4]] = (data, valid)
    return cases


def write(target, name, data):
    d = os.path.join(TARGET_DIRS[target], "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


HELLO_SITE = frame(1, 0, js({"name": "site-1", "version": 1}))
HELLO_TOKEN = frame(1, 0, js({"name": "site-1", "version": 1, "token": "s3cret"}))
HUGE_HEAD = frame(2, 9, js({"kind": "fire", "topic": "t", "body_size": 4 << 30}))


def frame_decoder(cases):
    valid = b"".join(d for d, ok in cases.values() if ok)
    for name, (data, ok) in cases.items():
        write("frame_decoder", name + ".whole", WHOLE + data)
        write("frame_decoder", name + ".split", SPLIT + data)
        if ok and len(data) > 1:
            write("frame_decoder", name + ".truncated", SPLIT + data[:-1])
    write("frame_decoder", "all_valid.whole", WHOLE + valid)
    write("frame_decoder", "all_valid.split", SPLIT + valid)


def message_header(cases):
    for name, (data, ok) in cases.items():
        for i, (ftype, payload) in enumerate(split_frames(data) if ok else []):
            if ftype in JSON_TYPES:
                write("message_header", f"{name}.{i}", payload)
    extra = {
        "hello_token": {"name": "site-1.job-1", "version": 1, "token": "s3cret"},
        "hello_bad_name": {"name": "a..b", "version": 1},
        "hello_version_2": {"name": "a", "version": 2},
        "head_wrong_types": {"kind": "req", "body_size": -1, "dst": 3, "hops": 1 << 40},
        "head_unknown_kind": {"kind": "shout"},
        "head_floats": {"kind": "fire", "h": {"x": 1.5e308, "y": -0.0, "z": [1, 2.5, None]}},
        "abort_codes": {"code": "unreachable", "message": "no route"},
    }
    for name, obj in extra.items():
        write("message_header", name, js(obj))
    write("message_header", "not_an_object", b"[1,2]")
    write("message_header", "truncated", b'{"kind":')
    write("message_header", "fqcn", b"site-1.job_42")


def stream_assembler(cases):
    valid = b"".join(d for d, ok in cases.values() if ok)
    for name, (data, ok) in cases.items():
        if ok:
            write("stream_assembler", name + ".whole", WHOLE + data)
    write("stream_assembler", "all_valid.split", SPLIT + valid)
    write("stream_assembler", "all_valid.tight", b"\x10" + valid)
    # A 4 GiB body_size under tight limits is rejected; under the defaults see findings/.
    write("stream_assembler", "huge_body.tight", b"\x10" + HUGE_HEAD + frame(3, 9, b"x" * 8))


def connection(cases):
    valid = b"".join(d for d, ok in cases.values() if ok and not d.startswith(b"EM\x01\x08"))
    for name, (data, ok) in cases.items():
        write("connection", name + ".connector", WHOLE + HELLO_SITE + data)
    write("connection", "all_valid.acceptor", b"\x10" + HELLO_SITE + valid)
    write("connection", "all_valid.acceptor_split", b"\x14\x01\x07\x10\x00" + HELLO_SITE + valid)
    write("connection", "token_ok.acceptor", b"\x30" + HELLO_TOKEN + valid)
    write("connection", "token_missing.acceptor", b"\x30" + HELLO_SITE + valid)
    write("connection", "no_hello.acceptor", b"\x10" + valid)


def main():
    for target, d in TARGET_DIRS.items():
        shutil.rmtree(os.path.join(d, "corpus", target), ignore_errors=True)
    cases = golden()
    frame_decoder(cases)
    message_header(cases)
    stream_assembler(cases)
    connection(cases)


if __name__ == "__main__":
    main()
