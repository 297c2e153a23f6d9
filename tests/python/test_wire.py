"""Frame codec (spec §1) and the blocking Link (§2-§3)."""

import filecmp
import glob
import json
import os
import socket
import struct
import subprocess
import sys
import threading

import pytest

from ember import _wire
from ember._wire import (FLAG_END, FrameType, Link, LinkClosed, LinkRefused, LinkTimeout,
                         ProtocolError, StreamAborted, decode_frames, decode_header,
                         encode_frame, encode_header, encode_json)

from fake_parent import FakeParent, read_frame, read_message

FRAMES_DIR = os.path.join(os.path.dirname(__file__), "..", "data", "frames")


# --- codec --------------------------------------------------------------------------

@pytest.mark.parametrize("ftype", list(FrameType))
def test_header_round_trips_for_every_type(ftype):
    length = {FrameType.PING: 0, FrameType.PONG: 0, FrameType.CREDIT: 8}.get(ftype, 42)
    stream = 0 if ftype in (FrameType.HELLO, FrameType.PING, FrameType.PONG,
                            FrameType.GOAWAY) else 7
    raw = encode_header(ftype, stream, length, FLAG_END)
    assert len(raw) == 16
    fh = decode_header(raw)
    assert (fh.type, fh.flags, fh.stream_id, fh.length, fh.end) == (ftype, 1, stream, length, True)


def test_header_layout_is_little_endian_per_spec():
    raw = encode_header(FrameType.DATA, 0x01020304, 0x0A0B0C, FLAG_END)
    assert raw == b"EM\x01\x03\x01\x00\x00\x00\x04\x03\x02\x01\x0c\x0b\x0a\x00"


def test_frames_round_trip_through_a_byte_string():
    data = (encode_frame(FrameType.HELLO, 0, b'{"name":"a","version":1}')
            + encode_frame(FrameType.HEAD, 5, b"{}")
            + encode_frame(FrameType.DATA, 5, b"xyz", FLAG_END)
            + encode_frame(FrameType.PING))
    frames = decode_frames(data)
    assert [f.type for f in frames] == [FrameType.HELLO, FrameType.HEAD, FrameType.DATA,
                                        FrameType.PING]
    assert frames[2].payload == b"xyz" and frames[2].end and not frames[1].end


@pytest.mark.parametrize("raw, message", [
    (b"XM\x01\x05" + bytes(12), "bad magic"),
    (b"EM\x02\x05" + bytes(12), "version 2"),
    (b"EM\x01\x09" + bytes(12), "unknown frame type 9"),
    (b"EM\x01\x00" + bytes(12), "unknown frame type 0"),
    (struct.pack("<2sBBHHII", b"EM", 1, 5, 0, 1, 0, 0), "reserved"),
    (struct.pack("<2sBBHHII", b"EM", 1, 2, 2, 0, 1, 0), "flags"),
    (struct.pack("<2sBBHHII", b"EM", 1, 2, 0, 0, 1, (1 << 20) + 1), "HEAD frame length"),
    (struct.pack("<2sBBHHII", b"EM", 1, 1, 0, 0, 0, (1 << 20) + 1), "HELLO frame length"),
    (struct.pack("<2sBBHHII", b"EM", 1, 3, 0, 0, 1, (16 << 20) + 1), "DATA frame length"),
    (struct.pack("<2sBBHHII", b"EM", 1, 5, 0, 0, 0, 1), "PING frame length"),
    (struct.pack("<2sBBHHII", b"EM", 1, 7, 0, 0, 1, 4), "CREDIT frame length 4 must be 8"),
    (struct.pack("<2sBBHHII", b"EM", 1, 5, 0, 0, 3, 0), "PING frame on stream 3"),
    (struct.pack("<2sBBHHII", b"EM", 1, 2, 0, 0, 0, 2), "HEAD frame on stream 0"),
    (struct.pack("<2sBBHHII", b"EM", 1, 3, 0, 0, 0, 2), "DATA frame on stream 0"),
    (b"EM\x01", "needs 16 bytes"),
])
def test_bad_headers_are_rejected_with_the_reason(raw, message):
    with pytest.raises(ProtocolError, match=message):
        decode_header(raw)


def test_limits_allow_the_maximum_sizes():
    assert decode_header(encode_header(FrameType.HEAD, 1, 1 << 20)).length == 1 << 20
    assert decode_header(encode_header(FrameType.DATA, 1, 16 << 20)).length == 16 << 20


def test_truncated_frame_is_rejected():
    data = encode_frame(FrameType.HEAD, 1, b"{}")[:-1]
    with pytest.raises(ProtocolError, match="truncated"):
        decode_frames(data)


def test_encoder_refuses_what_a_receiver_would_reject():
    with pytest.raises(ValueError, match="exceeds"):
        encode_header(FrameType.HEAD, 1, (1 << 20) + 1)
    with pytest.raises(ValueError, match="flags"):
        encode_header(FrameType.HEAD, 1, 0, flags=4)
    with pytest.raises(ValueError, match="u32"):
        encode_header(FrameType.DATA, 1 << 32, 0)
    with pytest.raises(ValueError, match="stream 0"):
        encode_header(FrameType.HEAD, 0, 2)


def test_chunks_split_views_across_tensor_boundaries_without_copying():
    a, b = bytearray(b"a" * 5), bytearray(b"b" * 7)
    chunks = list(_wire._chunks(_wire._as_byte_views([a, b]), 4))
    assert [b"".join(bytes(v) for v in c) for c in chunks] == [b"aaaa", b"abbb", b"bbbb"]
    a[0] = ord("z")
    assert bytes(chunks[0][0])[0] == ord("z")  # a view, not a copy


# --- golden frames ----------------------------------------------------------------------

def _golden_cases():
    return sorted(glob.glob(os.path.join(FRAMES_DIR, "*.json")))


def test_golden_frames_exist():
    names = {os.path.basename(p)[:-5] for p in _golden_cases()}
    assert {"hello", "head_end", "head_data", "ping", "abort"} <= names


@pytest.mark.parametrize("path", _golden_cases(), ids=lambda p: os.path.basename(p)[:-5])
def test_golden_frames_decode_as_described(path):
    with open(path) as f:
        expected = json.load(f)
    with open(path[:-5] + ".bin", "rb") as f:
        data = f.read()
    # The C++ suite knows invalid cases by name alone.
    assert expected["valid"] != os.path.basename(path).startswith("bad")
    if not expected["valid"]:
        with pytest.raises(ProtocolError):
            decode_frames(data)
        return
    frames = decode_frames(data)
    assert len(frames) == len(expected["frames"])
    for got, want in zip(frames, expected["frames"]):
        assert (int(got.type), got.type.name, got.flags, got.end, got.stream_id,
                len(got.payload), got.payload.hex()) == (
            want["type"], want["type_name"], want["flags"], want["end"], want["stream_id"],
            want["length"], want["payload_hex"])
        if "payload_json" in want:
            assert _wire.decode_json(got.payload, "golden") == want["payload_json"]
    if "body_hex" in expected:
        body = b"".join(f.payload for f in frames if f.type == FrameType.DATA)
        assert body.hex() == expected["body_hex"]
        assert len(body) == json.loads(frames[0].payload)["body_size"]


def test_golden_frames_are_what_make_golden_writes(tmp_path):
    script = os.path.join(FRAMES_DIR, "make_golden.py")
    subprocess.run([sys.executable, script, str(tmp_path)], check=True)
    for produced in sorted(tmp_path.iterdir()):
        assert filecmp.cmp(produced, os.path.join(FRAMES_DIR, produced.name), shallow=False), \
            f"{produced.name} is stale: rerun tests/data/frames/make_golden.py"


def test_golden_body_is_a_valid_safetensors_image():
    from ember import _safetensors as st
    with open(os.path.join(FRAMES_DIR, "head_data.json")) as f:
        body = bytearray.fromhex(json.load(f)["body_hex"])
    params = st.decode(body)
    assert params["w"].tolist() == [1.5, -2.0] and params["n"] == 7


# --- Link ------------------------------------------------------------------------------

def _connect(parent, token=None, name=None):
    return Link.connect("127.0.0.1", parent.port, name or f"site-1.{parent.job_id}",
                        token=parent.token if token is None else token, timeout=5)


def test_link_exchanges_hello_and_gets_a_reply_without_body():
    parent = FakeParent(tasks=[])
    with _connect(parent) as link:
        assert link.peer_name == "site-1"
        head, body = link.request("site-1", "link.get_task", {}, timeout=5)
    parent.join()
    assert head["h"] == {"task_name": "end"} and head["status"] == "ok" and body == bytearray()
    assert parent.hellos == [{"name": "site-1.job-1", "version": 1, "token": "tok-123"}]


def test_link_sends_a_multi_frame_body_and_receives_one_into_a_bytearray():
    big = os.urandom(2 * (1 << 20) + 123)

    def echo(parent, conn, head, sid):
        parent.echoed = head
        parent.reply(conn, head, {"n": 1}, body=big)
        return True
    parent = FakeParent(on_head=echo, ping_first=False)
    parts = [memoryview(big)[:1000], memoryview(big)[1000:]]
    with _connect(parent) as link:
        head, body = link.request("site-1", "x.echo", {"a": 1}, parts, timeout=10)
    parent.join()
    assert type(body) is bytearray and bytes(body) == big
    assert parent.echoed["body_size"] == len(big) and parent.echoed["h"] == {"a": 1}
    assert parent.echoed["kind"] == "req" and parent.echoed["src"] == "site-1.job-1"


def test_link_answers_ping_and_ignores_credit_while_waiting():
    parent = FakeParent(tasks=[({"task_name": "train"}, b"")], ping_first=True)
    with _connect(parent) as link:
        head, _ = link.request("site-1", "link.get_task", {}, timeout=5)
        link.request("site-1", "link.get_task", {}, timeout=5)  # "end"; PONG read before it
    parent.join()
    assert head["h"]["task_name"] == "train" and parent.pongs == 1


def test_wrong_token_gives_a_clear_error():
    parent = FakeParent()
    with pytest.raises(LinkRefused, match="bad token.*EMBER_LINK_TOKEN"):
        _connect(parent, token="wrong")
    parent.join()


def test_abort_of_the_reply_stream_raises_stream_aborted():
    def abort_midway(parent, conn, head, sid):
        sid = parent._next_stream + 1
        parent._next_stream = sid
        reply = {"kind": "reply", "topic": head["topic"], "req_id": head["req_id"],
                 "status": "ok", "body_size": 10, "h": {}}
        conn.sendall(encode_frame(FrameType.HEAD, sid, encode_json(reply)))
        conn.sendall(encode_frame(FrameType.DATA, sid, b"12345"))
        conn.sendall(encode_frame(FrameType.ABORT, sid,
                                  encode_json({"code": "aborted", "message": "client stopping"})))
        return True
    parent = FakeParent(on_head=abort_midway)
    with _connect(parent) as link:
        with pytest.raises(StreamAborted, match="client stopping") as info:
            link.request("site-1", "link.get_task", {}, timeout=5)
        assert info.value.code == "aborted"
    parent.join()


def test_timeout_keeps_the_request_pending_so_its_reply_is_not_lost():
    def late(parent, conn, head, sid):
        parent.first = head
        threading.Timer(0.4, parent.reply, (conn, head, {"late": True})).start()
        return True
    parent = FakeParent(on_head=late)
    with _connect(parent) as link:
        with pytest.raises(LinkTimeout):
            link.request("site-1", "t.one", {}, timeout=0.1)
        assert link.pending
        with pytest.raises(_wire.WireError, match="still pending"):
            link.request("site-1", "t.two", {}, timeout=5)
        head, _ = link.wait_reply(timeout=5)
        assert head["h"] == {"late": True} and not link.pending
        with pytest.raises(_wire.WireError, match="no request is waiting"):
            link.wait_reply(timeout=5)
    parent.join()


def test_replies_to_nobody_are_skipped_with_their_body():
    def stray_first(parent, conn, head, sid):
        stray = dict(head, req_id=12345)
        parent.reply(conn, stray, {"stray": True}, body=b"x" * 3000)
        parent.reply(conn, head, {"mine": True}, body=b"y" * 10)
        return True
    parent = FakeParent(on_head=stray_first)
    with _connect(parent) as link:
        head, body = link.request("site-1", "t.one", {}, timeout=5)
    parent.join()
    assert head["h"] == {"mine": True} and body == bytearray(b"y" * 10)


def test_requests_to_the_script_get_no_handler():
    def ask_back(parent, conn, head, sid):
        if head["topic"] == "t.ask":
            req = {"kind": "req", "topic": "x.probe", "src": "site-1", "dst": head["src"],
                   "req_id": 99, "body_size": 3, "h": {}}
            conn.sendall(encode_frame(FrameType.HEAD, 500, encode_json(req)))
            conn.sendall(encode_frame(FrameType.DATA, 500, b"abc", FLAG_END))
            parent.answer = read_message(conn)[0]
            parent.reply(conn, head, {"ok": 1})
            return True
        return False
    parent = FakeParent(on_head=ask_back)
    with _connect(parent) as link:
        head, _ = link.request("site-1", "t.ask", {}, timeout=5)
    parent.join()
    assert head["h"] == {"ok": 1}
    assert parent.answer["status"] == "no_handler" and parent.answer["req_id"] == 99


def test_peer_closing_raises_link_closed_and_the_link_stays_closed():
    def hang_up(parent, conn, head, sid):
        conn.shutdown(socket.SHUT_RDWR)
        return True
    parent = FakeParent(on_head=hang_up)
    link = _connect(parent)
    with pytest.raises(LinkClosed, match="closed the connection"):
        link.request("site-1", "link.get_task", {}, timeout=5)
    with pytest.raises(LinkClosed, match="is closed"):
        link.fire("site-1", "link.log", {})
    parent.join()


def test_goaway_while_waiting_is_a_clear_link_closed():
    def goaway(parent, conn, head, sid):
        conn.sendall(encode_frame(FrameType.GOAWAY, 0, encode_json({"reason": "job aborted"})))
        return True
    parent = FakeParent(on_head=goaway)
    with _connect(parent) as link:
        with pytest.raises(LinkClosed, match="job aborted"):
            link.request("site-1", "link.get_task", {}, timeout=5)
    parent.join()


def test_oversized_frame_from_the_peer_closes_the_link():
    def bad(parent, conn, head, sid):
        conn.sendall(struct.pack("<2sBBHHII", b"EM", 1, 2, 0, 0, 9, (1 << 20) + 1))
        return True
    parent = FakeParent(on_head=bad)
    link = _connect(parent)
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        link.request("site-1", "link.get_task", {}, timeout=5)
    assert link.closed
    parent.join()


def test_reply_longer_than_body_size_is_a_protocol_error():
    def liar(parent, conn, head, sid):
        reply = {"kind": "reply", "topic": head["topic"], "req_id": head["req_id"],
                 "status": "ok", "body_size": 2, "h": {}}
        conn.sendall(encode_frame(FrameType.HEAD, 9, encode_json(reply)))
        conn.sendall(encode_frame(FrameType.DATA, 9, b"abc", FLAG_END))
        return True
    parent = FakeParent(on_head=liar)
    with _connect(parent) as link:
        with pytest.raises(ProtocolError, match="more than its body_size"):
            link.request("site-1", "link.get_task", {}, timeout=5)
    parent.join()


def test_bad_cell_name_is_refused_before_connecting():
    with pytest.raises(ValueError, match="not a valid FQCN"):
        Link.connect("127.0.0.1", 1, "site 1/job")


def test_fire_is_safe_while_another_thread_waits_for_a_reply():
    release = threading.Event()

    def hold(parent, conn, head, sid):
        if head["topic"] == "link.log":
            parent.logs.append(head["h"])
            parent.reply(conn, parent.held, {"done": True})
            return True
        parent.held = head
        return True
    parent = FakeParent(on_head=hold)
    with _connect(parent) as link:
        out = {}
        t = threading.Thread(target=lambda: out.update(r=link.request("site-1", "t.wait", {})))
        t.start()
        release.wait(0.2)
        link.fire("site-1", "link.log", {"level": "info", "msg": "hello"})
        t.join(5)
    parent.join()
    assert out["r"][0]["h"] == {"done": True}
    assert parent.logs == [{"level": "info", "msg": "hello"}]


# --- body sinks ------------------------------------------------------------------------------

class _PiecesSink:
    """A body sink handing out views into buffers of at most `piece` bytes, so one DATA
    frame lands in several views; records the calls."""

    def __init__(self, piece=5, fail_at=None):
        self.piece, self.fail_at = piece, fail_at
        self.pieces, self.calls, self.size = [], [], None

    def begin(self, body_size):
        self.size = body_size

    def views(self, offset, n):
        self.calls.append((offset, n))
        if self.fail_at is not None and offset >= self.fail_at:
            raise ValueError(f"sink refuses offset {offset}")
        out = []
        for _ in range(3):  # at most three views per call: the link must call again
            take = min(self.piece, n)
            if not take:
                break
            self.pieces.append(bytearray(take))
            out.append(memoryview(self.pieces[-1]))
            n -= take
        return out

    def finish(self):
        return ("done", b"".join(self.pieces))


def _send_split(parent, conn, head, body, sizes, status="ok"):
    """A reply whose body travels in DATA frames of the given sizes (the rest in one)."""
    parent._next_stream += 1
    sid = parent._next_stream
    reply = {"kind": "reply", "topic": head["topic"], "src": "site-1", "dst": head["src"],
             "req_id": head["req_id"], "status": status, "body_size": len(body), "h": {}}
    conn.sendall(encode_frame(FrameType.HEAD, sid, encode_json(reply), 0 if body else FLAG_END))
    pos = 0
    for size in [*sizes, len(body)]:
        if pos == len(body):
            break
        end = min(pos + size, len(body))
        conn.sendall(encode_frame(FrameType.DATA, sid, body[pos:end],
                                  FLAG_END if end == len(body) else 0))
        pos = end


def test_link_reads_a_body_into_a_sink_whatever_the_frame_splits():
    body = os.urandom(3000)

    def split(parent, conn, head, sid):
        _send_split(parent, conn, head, body, [1, 7, 3, 1000, 2, 1])
        return True
    parent = FakeParent(on_head=split)
    sink = _PiecesSink()
    with _connect(parent) as link:
        head, result = link.request("site-1", "x.get", {}, timeout=5, sink=sink)
    parent.join()
    assert result == ("done", body) and sink.size == 3000 and head["status"] == "ok"
    assert all(n > 0 for _, n in sink.calls) and sink.calls[0] == (0, 1)


def test_link_feeds_a_tensor_sink_a_model_split_inside_size_header_and_tensors():
    import numpy as np
    from ember import _safetensors as st
    params = {"a": np.arange(300, dtype=np.float32), "b": np.array(7, np.int64)}
    image = st.dumps(params)

    def split(parent, conn, head, sid):
        _send_split(parent, conn, head, image, [3, 20, len(image) - 23 - 1000, 998])
        return True
    parent = FakeParent(on_head=split)
    with _connect(parent) as link:
        _, (got, meta) = link.request("site-1", "x.get", {}, timeout=5, sink=st.TensorSink())
    parent.join()
    assert list(got) == ["a", "b"] and meta == {}
    assert got["a"].tolist() == params["a"].tolist() and got["b"] == 7 and got["a"].base is None


def test_a_reply_that_is_not_ok_bypasses_the_sink():
    def refuse(parent, conn, head, sid):
        _send_split(parent, conn, head, b"why", [], status="internal")
        return True
    parent = FakeParent(on_head=refuse)
    sink = _PiecesSink()
    with _connect(parent) as link:
        head, body = link.request("site-1", "x.get", {}, timeout=5, sink=sink)
    parent.join()
    assert head["status"] == "internal" and body == bytearray(b"why") and sink.size is None


def test_a_refusing_sink_fails_the_request_and_the_link_stays_usable():
    body = os.urandom(5000)

    def serve(parent, conn, head, sid):
        if head["topic"] == "x.get":
            _send_split(parent, conn, head, body, [10, 2000])  # refused inside frame 2
        else:
            parent.reply(conn, head, {"second": True}, body=b"ok")
        return True
    parent = FakeParent(on_head=serve)
    with _connect(parent) as link:
        with pytest.raises(ValueError, match="sink refuses offset 25"):
            link.request("site-1", "x.get", {}, timeout=5, sink=_PiecesSink(fail_at=20))
        assert not link.closed and not link.pending
        head, got = link.request("site-1", "x.next", {}, timeout=5)  # the rest is skipped
    parent.join()
    assert head["h"] == {"second": True} and got == bytearray(b"ok")


def test_wait_reply_after_a_timeout_keeps_the_pending_sink():
    body = os.urandom(100)

    def late(parent, conn, head, sid):
        threading.Timer(0.4, _send_split, (parent, conn, head, body, [50])).start()
        return True
    parent = FakeParent(on_head=late)
    sink = _PiecesSink()
    with _connect(parent) as link:
        with pytest.raises(LinkTimeout):
            link.request("site-1", "x.get", {}, timeout=0.1, sink=sink)
        _, result = link.wait_reply(timeout=5)
    parent.join()
    assert result == ("done", body)


# --- flow control (§8) -------------------------------------------------------------------

class _RawParent:
    """A parent on a plain socket whose HELLO grants `window` bytes per stream; `serve`
    runs on a thread with the accepted socket once HELLO is exchanged."""

    def __init__(self, window, serve):
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.error = None
        self._thread = threading.Thread(target=self._run, args=(window, serve), daemon=True)
        self._thread.start()

    def _run(self, window, serve):
        try:
            self._server.settimeout(10)
            conn, _ = self._server.accept()
            with conn:
                conn.settimeout(10)
                fh, _ = read_frame(conn)
                assert fh.type == FrameType.HELLO
                conn.sendall(encode_frame(FrameType.HELLO, 0, encode_json(
                    {"name": "site-1", "version": 1, "window": window})))
                serve(conn)
        except BaseException as e:  # surfaced by join()
            self.error = e
        finally:
            self._server.close()

    def join(self):
        self._thread.join(10)
        assert not self._thread.is_alive(), "raw parent did not finish"
        if self.error:
            raise self.error


def _reply_frames(head, h, body_size=0):
    reply = {"kind": "reply", "topic": head["topic"], "req_id": head["req_id"], "status": "ok",
             "body_size": body_size, "h": h}
    return encode_frame(FrameType.HEAD, 900, encode_json(reply), 0 if body_size else FLAG_END)


def test_link_sends_a_body_within_the_peer_window_and_waits_for_credit():
    window, size = 64 << 10, 200 << 10
    seen = {}

    def serve(conn):
        fh, payload = read_frame(conn)
        assert fh.type == FrameType.HEAD
        head, sid, got = json.loads(payload), fh.stream_id, 0
        while got < window:
            fh, data = read_frame(conn)
            assert fh.type == FrameType.DATA and fh.stream_id == sid
            got += len(data)
        seen["first_burst"] = got
        conn.settimeout(0.3)  # nothing more may come without credit...
        with pytest.raises(socket.timeout):
            read_frame(conn)
        conn.settimeout(10)
        conn.sendall(encode_frame(FrameType.PING))  # ...but PING is answered meanwhile
        fh, _ = read_frame(conn)
        seen["pong"] = fh.type
        conn.sendall(encode_frame(FrameType.CREDIT, sid, struct.pack("<Q", size - window)))
        while got < size:
            fh, data = read_frame(conn)
            assert fh.type == FrameType.DATA
            got += len(data)
        seen["end"] = fh.end
        conn.sendall(_reply_frames(head, {"got": got}))

    parent = _RawParent(window, serve)
    with Link.connect("127.0.0.1", parent.port, "site-1.job-1", timeout=5) as link:
        assert link.peer_window == window
        head, _ = link.request("site-1", "x.put", {}, [os.urandom(size)], timeout=10)
    parent.join()
    assert seen == {"first_burst": window, "pong": FrameType.PONG, "end": True}
    assert head["h"] == {"got": size}


def test_link_grants_a_large_incoming_body_all_at_once():
    size = _wire.DEFAULT_WINDOW + 12345

    def serve(conn):
        fh, payload = read_frame(conn)
        head = json.loads(payload)
        conn.sendall(_reply_frames(head, {}, size))
        fh, payload = read_frame(conn)  # before any DATA: the link grants the rest
        assert fh.type == FrameType.CREDIT and fh.stream_id == 900
        assert struct.unpack("<Q", payload)[0] == 12345
        for off in range(0, size, 1 << 20):
            n = min(1 << 20, size - off)
            conn.sendall(encode_frame(FrameType.DATA, 900, bytes(n), FLAG_END if off + n == size else 0))

    parent = _RawParent(1 << 20, serve)
    with Link.connect("127.0.0.1", parent.port, "site-1.job-1", timeout=5) as link:
        _, body = link.request("site-1", "x.get", {}, timeout=10)
    parent.join()
    assert len(body) == size


def test_link_aborts_a_stream_that_gets_no_credit(monkeypatch):
    monkeypatch.setattr(_wire, "ACK_PROGRESS_TIMEOUT", 0.3)
    seen = {}

    def serve(conn):
        while True:
            fh, payload = read_frame(conn)
            if fh is None:
                return
            if fh.type == FrameType.ABORT:
                seen["abort"] = (fh.stream_id, json.loads(payload))
                return

    parent = _RawParent(1024, serve)
    with Link.connect("127.0.0.1", parent.port, "site-1.job-1", timeout=5) as link:
        with pytest.raises(LinkTimeout, match="stream 1 to 'site-1': no flow-control credit"):
            link.request("site-1", "x.put", {}, [bytes(5000)], timeout=10)
        assert not link.pending and not link.closed
    parent.join()
    assert seen["abort"][0] == 1 and seen["abort"][1]["code"] == "timeout"
