#!/usr/bin/env python3
"""Writes the golden frames decoded by both the C++ and the Python test suites.

Each case is NAME.bin (raw bytes: one or more frames) and NAME.json describing what a
decoder must find. The bytes are built here with `struct`, straight from
docs/wire-format.md §1-§5, NOT with either codec, so the codecs are checked against the
spec rather than against themselves.

NAME.json:
  {"description": str, "valid": true,
   "frames": [{"type": int, "type_name": str, "flags": int, "end": bool,
               "stream_id": int, "length": int, "payload_hex": str,
               "payload_json": object (only for JSON payloads)}],
   "body_hex": str (only when the frames form a message with a body)}
  or, for bytes a receiver must reject before reading any payload:
  {"description": str, "valid": false, "error": "bad_magic" | "bad_version" |
   "bad_type" | "bad_reserved" | "bad_stream" | "too_long"}
  Invalid cases are named bad_*: the C++ golden test rejects every bad_*.bin.

Usage: python3 tests/data/frames/make_golden.py [OUT_DIR]   (default: this folder)
"""

import json
import os
import struct
import sys

HEADER = struct.Struct("<2sBBHHII")  # magic, version, type, flags, reserved, stream, length
TYPES = {1: "HELLO", 2: "HEAD", 3: "DATA", 4: "ABORT", 5: "PING", 6: "PONG",
         7: "CREDIT", 8: "GOAWAY"}
END = 1


def frame(ftype, stream_id, payload=b"", flags=0, magic=b"EM", version=1, reserved=0,
          length=None):
    length = len(payload) if length is None else length
    return HEADER.pack(magic, version, ftype, flags, reserved, stream_id, length) + payload


def js(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def describe(ftype, stream_id, payload=b"", flags=0, is_json=False):
    d = {"type": ftype, "type_name": TYPES[ftype], "flags": flags, "end": bool(flags & END),
         "stream_id": stream_id, "length": len(payload), "payload_hex": payload.hex()}
    if is_json:
        d["payload_json"] = json.loads(payload)
    return d


def safetensors_body():
    """{"w": F32[2] = [1.5, -2.0], "n": I64[] = 7} with the header padded to 8 (§5)."""
    header = js({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                 "n": {"dtype": "I64", "shape": [], "data_offsets": [8, 16]}})
    header += b" " * (-len(header) % 8)
    data = struct.pack("<ff", 1.5, -2.0) + struct.pack("<q", 7)
    return struct.pack("<Q", len(header)) + header + data


def valid_cases():
    hello = js({"name": "site-1", "version": 1, "token": "s3cret"})
    head_end = js({"kind": "req", "topic": "link.get_task", "src": "site-1.job-1",
                   "dst": "site-1", "req_id": 1, "body_size": 0, "hops": 0, "h": {}})
    body = safetensors_body()
    head_body = js({"kind": "reply", "topic": "link.get_task", "src": "site-1",
                    "dst": "site-1.job-1", "req_id": 1, "status": "ok", "body_size": len(body),
                    "hops": 0, "h": {"task_name": "train", "task_id": "r0-site-1",
                                     "job_id": "job-1", "current_round": 0, "total_rounds": 2,
                                     "params_type": "FULL", "meta": {}}})
    split = 20  # inside the JSON header: a decoder must not assume aligned chunks
    abort = js({"code": "aborted", "message": "client gave up"})
    goaway = js({"reason": "bad token"})
    return {
        "hello": ("HELLO from a client", [(1, 0, hello, 0, True)], None),
        "head_end": ("request without a body: one HEAD frame with END",
                     [(2, 1, head_end, END, True)], None),
        "head_data": ("reply with a safetensors body in two DATA frames, END on the last",
                      [(2, 7, head_body, 0, True), (3, 7, body[:split], 0, False),
                       (3, 7, body[split:], END, False)], body),
        "ping": ("PING on the connection stream", [(5, 0, b"", 0, False)], None),
        "pong": ("PONG on the connection stream", [(6, 0, b"", 0, False)], None),
        "abort": ("ABORT of stream 7", [(4, 7, abort, 0, True)], None),
        "credit": ("CREDIT of 1 MiB on stream 7", [(7, 7, struct.pack("<Q", 1 << 20), 0, False)],
                   None),
        "goaway": ("GOAWAY after a bad token", [(8, 0, goaway, 0, True)], None),
    }


def invalid_cases():
    """Headers only: each must be rejected from its 16 bytes alone."""
    return {
        "bad_magic": ("magic 'XM'", frame(5, 0, magic=b"XM"), "bad_magic"),
        "bad_version": ("version 2", frame(5, 0, version=2), "bad_version"),
        "bad_type": ("frame type 9", frame(9, 0), "bad_type"),
        "bad_reserved": ("reserved field 1", frame(5, 0, reserved=1), "bad_reserved"),
        "bad_oversized_head": ("HEAD length 1 MiB + 1", frame(2, 1, length=(1 << 20) + 1),
                               "too_long"),
        "bad_oversized_hello": ("HELLO length 1 MiB + 1", frame(1, 0, length=(1 << 20) + 1),
                                "too_long"),
        "bad_oversized_data": ("DATA length 16 MiB + 1", frame(3, 1, length=(16 << 20) + 1),
                               "too_long"),
        "bad_ping_on_stream": ("PING on stream 3 (connection frames use stream 0)",
                               frame(5, 3), "bad_stream"),
        "bad_head_on_stream_0": ("HEAD on stream 0 (reserved for connection frames)",
                                 frame(2, 0, length=2), "bad_stream"),
    }


def write(out_dir, name, data, description):
    with open(os.path.join(out_dir, name + ".bin"), "wb") as f:
        f.write(data)
    with open(os.path.join(out_dir, name + ".json"), "w") as f:
        json.dump(description, f, indent=2, sort_keys=True)
        f.write("\n")


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for name, (text, frames, body) in valid_cases().items():
        data = b"".join(frame(t, s, p, fl) for t, s, p, fl, _ in frames)
        desc = {"description": text, "valid": True,
                "frames": [describe(t, s, p, fl, is_json) for t, s, p, fl, is_json in frames]}
        if body is not None:
            desc["body_hex"] = body.hex()
        write(out_dir, name, data, desc)
    for name, (text, data, error) in invalid_cases().items():
        write(out_dir, name, data, {"description": text, "valid": False, "error": error})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
