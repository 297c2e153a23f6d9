"""Ember frames and a blocking link to a parent cell (docs/wire-format.md §1-§4).

Two layers live here:

* pure codecs (``encode_header``, ``encode_frame``, ``decode_header``, ``decode_frames``)
  with no I/O, shared by the tests and by the link;
* ``Link``: one TCP connection from a leaf cell (the training script) to its parent
  (the ember client). It does one request at a time, answers PING, and never buffers a
  whole model twice: bodies are sent as a list of memoryviews and received into one
  preallocated bytearray, or, with a body *sink*, into buffers the sink provides (e.g.
  ``_safetensors.TensorSink``: one array per tensor).

Flow control (docs/wire-format.md §8): the link preallocates every body it receives (a
sink allocates it as it arrives), so it grants each incoming stream its whole body with
one CREDIT at HEAD. When it sends a body it stays within the window the parent granted
(HELLO ``window`` plus CREDITs), reading frames meanwhile (answering PING); a stream that
gets no credit for ``ACK_PROGRESS_TIMEOUT`` seconds is aborted with LinkTimeout.

    link = Link.connect("127.0.0.1", 8003, "site-1.job1", token="s3cret")
    head, body = link.request("site-1", "link.get_task", {})
    head, (params, meta) = link.request("server", "fl.get_model", {...}, sink=TensorSink())
    link.fire("site-1", "link.log", {"level": "info", "msg": "hi"})

Thread-safety: ``request`` calls are serialised (one in flight); ``fire`` may be called
from another thread while a request waits for its reply.
"""

from __future__ import annotations

import enum
import itertools
import json
import re
import select
import socket
import struct
import threading
import time
from typing import Any, Iterable, Iterator, List, NamedTuple, Optional, Protocol, Sequence, Tuple

# --- Frame layout (§1) -------------------------------------------------------------

MAGIC = b"EM"
VERSION = 1
HEADER_SIZE = 16
FLAG_END = 0x0001
MAX_HEADER_BYTES = 1 << 20          # kMaxHeaderBytes: HELLO / HEAD (and ABORT, GOAWAY)
MAX_FRAME_PAYLOAD = 16 << 20        # kMaxFramePayload: DATA
STREAMING_CHUNK_SIZE = 1 << 20      # what this sender puts in one DATA frame
DEFAULT_WINDOW = 16 << 20           # credit per stream when a HELLO names no "window" (§8)
ACK_PROGRESS_TIMEOUT = 60.0         # streaming_ack_progress_timeout: give up a starved stream
MAX_HOPS = 16

# magic, version, type, flags, reserved, stream_id, length
_HEADER = struct.Struct("<2sBBHHII")
_U64 = struct.Struct("<Q")
_U32_MAX = (1 << 32) - 1
_U64_MAX = (1 << 64) - 1
_FQCN_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


class FrameType(enum.IntEnum):
    HELLO = 1
    HEAD = 2
    DATA = 3
    ABORT = 4
    PING = 5
    PONG = 6
    CREDIT = 7
    GOAWAY = 8


# Payload limits per type. Control frames with a fixed layout get an exact size so a
# malformed one is caught by the header check, before its payload is read.
_MAX_PAYLOAD = {
    FrameType.HELLO: MAX_HEADER_BYTES,
    FrameType.HEAD: MAX_HEADER_BYTES,
    FrameType.DATA: MAX_FRAME_PAYLOAD,
    FrameType.ABORT: MAX_HEADER_BYTES,
    FrameType.PING: 0,
    FrameType.PONG: 0,
    FrameType.CREDIT: 8,
    FrameType.GOAWAY: MAX_HEADER_BYTES,
}
_EXACT_PAYLOAD = {FrameType.CREDIT: 8}
# Stream rules of §1: connection-level frames use stream 0, stream frames never do.
_CONNECTION_LEVEL = (FrameType.HELLO, FrameType.PING, FrameType.PONG, FrameType.GOAWAY)
_NEEDS_STREAM = (FrameType.HEAD, FrameType.DATA, FrameType.ABORT, FrameType.CREDIT)

# --- Status codes (§4) -------------------------------------------------------------

STATUS_OK = "ok"
STATUS_CODES = ("ok", "timeout", "unreachable", "no_handler", "invalid_request",
                "aborted", "internal", "closed")
RETRYABLE_STATUS = ("timeout", "unreachable", "closed")


# --- Errors --------------------------------------------------------------------------

class WireError(Exception):
    """Base of every error raised by this module."""


class ProtocolError(WireError):
    """The peer sent bytes that break docs/wire-format.md; the link is closed."""


class LinkClosed(WireError, ConnectionError):
    """The connection is gone (peer closed, GOAWAY, or an earlier fatal error)."""


class LinkRefused(LinkClosed):
    """The peer answered our HELLO with GOAWAY (e.g. a wrong token)."""


class LinkTimeout(WireError, TimeoutError):
    """No reply arrived within the caller's timeout."""


class StreamAborted(WireError):
    """The peer sent ABORT for the reply (or our request) stream."""

    def __init__(self, code: str, message: str):
        super().__init__(f"peer aborted the stream: {code}: {message}")
        self.code = code
        self.message = message


class RemoteError(WireError):
    """A reply carried a status other than ``ok``."""

    def __init__(self, what: str, status: str, error: str):
        detail = f": {error}" if error else ""
        super().__init__(f"{what} failed with status '{status}'{detail}")
        self.status = status
        self.error = error

    @property
    def retryable(self) -> bool:
        return self.status in RETRYABLE_STATUS


# --- Pure codecs ---------------------------------------------------------------------

class FrameHeader(NamedTuple):
    type: FrameType
    flags: int
    stream_id: int
    length: int

    @property
    def end(self) -> bool:
        return bool(self.flags & FLAG_END)


class Frame(NamedTuple):
    type: FrameType
    flags: int
    stream_id: int
    payload: bytes

    @property
    def end(self) -> bool:
        return bool(self.flags & FLAG_END)


def _check_stream(ftype: FrameType, stream_id: int) -> None:
    if ftype in _CONNECTION_LEVEL and stream_id != 0:
        raise ProtocolError(f"{ftype.name} frame on stream {stream_id}, expected stream 0")
    if ftype in _NEEDS_STREAM and stream_id == 0:
        raise ProtocolError(f"{ftype.name} frame on stream 0, which is for connection frames")


def _check_limit(ftype: FrameType, length: int) -> None:
    """Raises ProtocolError if `length` is not allowed for `ftype` (spec §1 limits)."""
    limit = _MAX_PAYLOAD[ftype]
    if length > limit:
        raise ProtocolError(f"{ftype.name} frame length {length} exceeds the limit {limit}")
    exact = _EXACT_PAYLOAD.get(ftype)
    if exact is not None and length != exact:
        raise ProtocolError(f"{ftype.name} frame length {length} must be {exact}")


def encode_header(ftype: int, stream_id: int, length: int, flags: int = 0) -> bytes:
    """The 16-byte frame header. Refuses what a receiver would reject, so a bug here
    fails at the sender with a clear message instead of closing the peer's connection."""
    ftype = FrameType(ftype)
    if flags & ~FLAG_END:
        raise ValueError(f"unknown frame flags 0x{flags:04x}; only END (0x0001) is defined")
    if not 0 <= stream_id <= _U32_MAX:
        raise ValueError(f"stream_id {stream_id} is not a u32")
    try:
        _check_stream(ftype, stream_id)
        _check_limit(ftype, length)
    except ProtocolError as e:
        raise ValueError(str(e)) from None
    return _HEADER.pack(MAGIC, VERSION, int(ftype), flags, 0, stream_id, length)


def encode_frame(ftype: int, stream_id: int = 0, payload: bytes = b"", flags: int = 0) -> bytes:
    """A whole frame as bytes; for control frames and tests (bodies use Link's
    vectored path instead)."""
    return encode_header(ftype, stream_id, len(payload), flags) + bytes(payload)


def decode_header(buf) -> FrameHeader:
    """Parses and validates a 16-byte header. Every check happens here, before the
    caller allocates anything for the payload."""
    if len(buf) < HEADER_SIZE:
        raise ProtocolError(f"frame header needs {HEADER_SIZE} bytes, got {len(buf)}")
    magic, version, ftype, flags, reserved, stream_id, length = _HEADER.unpack_from(buf)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r} (expected {MAGIC!r}); not an ember peer?")
    if version != VERSION:
        raise ProtocolError(f"unsupported frame version {version} (this side speaks {VERSION})")
    try:
        ftype = FrameType(ftype)
    except ValueError:
        raise ProtocolError(f"unknown frame type {ftype}") from None
    if reserved != 0:
        raise ProtocolError(f"reserved header field is 0x{reserved:04x}, must be 0")
    if flags & ~FLAG_END:
        raise ProtocolError(f"unknown frame flags 0x{flags:04x}; only END (0x0001) is defined")
    _check_stream(ftype, stream_id)
    _check_limit(ftype, length)
    return FrameHeader(ftype, flags, stream_id, length)


def decode_frames(data) -> List[Frame]:
    """Splits a complete byte string into frames; raises on a truncated tail."""
    view = memoryview(data).cast("B")
    frames, pos = [], 0
    while pos < len(view):
        fh = decode_header(view[pos:pos + HEADER_SIZE])
        start = pos + HEADER_SIZE
        if start + fh.length > len(view):
            raise ProtocolError(f"{fh.type.name} frame at offset {pos} is truncated: needs "
                                f"{fh.length} payload bytes, {len(view) - start} remain")
        frames.append(Frame(fh.type, fh.flags, fh.stream_id, bytes(view[start:start + fh.length])))
        pos = start + fh.length
    return frames


def encode_json(obj) -> bytes:
    """Compact UTF-8 JSON; NaN/Infinity are refused because they are not JSON."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def decode_json(payload, what: str) -> dict:
    """Parses a JSON-object payload; `what` names the frame in the error."""
    try:
        obj = json.loads(bytes(payload).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"{what} payload is not UTF-8 JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} payload must be a JSON object, got {type(obj).__name__}")
    return obj


def check_fqcn(name: str, what: str = "cell name") -> str:
    """FQCNs are dot-joined parts of [A-Za-z0-9_-] (§3); a bad one would be unroutable."""
    if not isinstance(name, str) or not _FQCN_RE.match(name):
        raise ValueError(f"{what} {name!r} is not a valid FQCN "
                         "(dot-joined parts of letters, digits, '_' and '-')")
    return name


def check_reply(head: dict, what: str) -> dict:
    """Returns `head` if its status is ok, else raises RemoteError naming `what`."""
    status = head.get("status", STATUS_OK)
    if status != STATUS_OK:
        raise RemoteError(what, str(status), str(head.get("error", "")))
    return head


def _as_byte_views(parts: Iterable) -> List[memoryview]:
    """Flat unsigned-byte views of each non-empty part (no copy)."""
    views = []
    for part in parts:
        view = memoryview(part)
        if view.ndim != 1 or view.format != "B":
            view = view.cast("B")
        if view.nbytes:
            views.append(view)
    return views


def _split(chunk: List[memoryview], n: int) -> Tuple[List[memoryview], List[memoryview]]:
    """The first `n` bytes of a chunk and the rest, as views (no copy)."""
    head, rest = [], []
    for view in chunk:
        if n >= view.nbytes:
            head.append(view)
            n -= view.nbytes
        elif n > 0:
            head.append(view[:n])
            rest.append(view[n:])
            n = 0
        else:
            rest.append(view)
    return head, rest


def _chunks(views: Sequence[memoryview], size: int) -> Iterator[List[memoryview]]:
    """Groups byte views into runs of at most `size` bytes, splitting views as needed,
    so a DATA frame can span tensor boundaries without copying."""
    batch, room = [], size
    for view in views:
        off = 0
        while off < view.nbytes:
            take = min(room, view.nbytes - off)
            batch.append(view[off:off + take])
            off += take
            room -= take
            if room == 0:
                yield batch
                batch, room = [], size
    if batch:
        yield batch


# --- The link ----------------------------------------------------------------------

class BodySink(Protocol):
    """Where a reply body goes instead of one bytearray (``Link.request(..., sink=)``).

    The link calls ``begin(body_size)`` at the reply's HEAD, then, for the DATA bytes at
    body offsets ``offset .. offset + n``, ``views(offset, n)`` until they are all read:
    it returns writable flat byte memoryviews for the next 1..n bytes (the link
    ``recv_into``s each, in order, before the next call, so everything before `offset`
    has arrived). At END ``finish()`` returns what ``request`` returns as the body. Each
    call may raise to refuse the body: the error leaves ``request``, the link skips the
    rest of that reply and stays usable. DATA frames may split the body anywhere.
    """

    def begin(self, body_size: int) -> None: ...

    def views(self, offset: int, n: int) -> List[memoryview]: ...

    def finish(self) -> Any: ...


class _PendingReply:
    """A request waiting for its reply; survives a timeout so the reply is not lost."""
    __slots__ = ("req_id", "req_stream", "topic", "head", "body", "size", "filled", "sink",
                 "stream", "done")

    def __init__(self, req_id: int, req_stream: int, topic: str, sink: Optional[BodySink]):
        self.req_id, self.req_stream, self.topic = req_id, req_stream, topic
        self.head: Optional[dict] = None
        self.body: Any = bytearray()
        self.size = 0
        self.filled = 0
        self.sink = sink
        self.stream: Optional[int] = None
        self.done = False


class Link:
    """A blocking connection from a leaf cell to its parent cell.

    Use ``Link.connect``; see the module docstring for an example.
    """

    def __init__(self, sock: socket.socket, name: str, peer_name: str):
        self._sock = sock
        self.name = name
        self.peer_name = peer_name
        self._send_lock = threading.Lock()      # guards frame writes
        self._request_lock = threading.Lock()   # one request (and reader) at a time
        self._stream_ids = itertools.count(1)
        self._req_ids = itertools.count(1)
        self._closed_reason: Optional[str] = None
        self._scratch = bytearray(64 * 1024)    # for payloads we discard
        self._header_buf = bytearray(HEADER_SIZE)
        self._deadline: Optional[float] = None  # of the wait in progress; reader only
        self._pending: Optional[_PendingReply] = None  # guarded by _request_lock
        self.peer_window = DEFAULT_WINDOW         # initial credit per stream we send (§8)
        self._credit: dict = {}                   # our stream id -> bytes we may send; reader only

    # -- set-up and tear-down ------------------------------------------------------

    @classmethod
    def connect(cls, host: str, port: int, name: str, token: Optional[str] = None,
                timeout: float = 30.0) -> "Link":
        """Connects and exchanges HELLO (§3). Raises LinkRefused on GOAWAY."""
        check_fqcn(name)
        try:
            sock = socket.create_connection((host, int(port)), timeout=timeout)
        except OSError as e:
            raise LinkClosed(f"cannot connect to ember at {host}:{port}: {e}") from e
        sock.settimeout(None)  # waits use poll() so a sending thread never times out
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = cls(sock, name, peer_name="")
        link._deadline = time.monotonic() + timeout
        try:
            link.peer_name = link._handshake(token, f"{host}:{port}")
        except BaseException:
            link.close()
            raise
        link._deadline = None
        return link

    def _handshake(self, token: Optional[str], where: str) -> str:
        hello = {"name": self.name, "version": VERSION}
        if token:
            hello["token"] = token
        self._send_control(FrameType.HELLO, encode_json(hello))
        try:
            fh = self._read_header()
        except LinkTimeout:
            raise LinkTimeout(f"no HELLO from ember at {where} in time") from None
        except LinkClosed as e:
            raise LinkClosed(f"ember at {where} closed the connection during the HELLO "
                             f"exchange ({e}); is the port right?") from None
        if fh.type == FrameType.GOAWAY:
            reason = self._read_json(fh, "GOAWAY").get("reason", "")
            self._mark_closed(f"GOAWAY: {reason}")
            raise LinkRefused(f"ember at {where} refused link '{self.name}': {reason or 'no reason'}"
                              + (" (check EMBER_LINK_TOKEN)" if "token" in reason else ""))
        if fh.type != FrameType.HELLO:
            raise ProtocolError(f"expected HELLO from {where}, got {fh.type.name}")
        peer = self._read_json(fh, "HELLO")
        if peer.get("version") != VERSION:
            raise ProtocolError(f"peer at {where} speaks version {peer.get('version')!r}, "
                                f"this side speaks {VERSION}")
        window = peer.get("window", 0)
        if not isinstance(window, int) or isinstance(window, bool) or not 0 <= window <= _U64_MAX:
            raise ProtocolError(f"peer at {where} sent HELLO window {window!r}, not a u64")
        self.peer_window = window or DEFAULT_WINDOW
        return str(peer.get("name", ""))

    def close(self) -> None:
        """Closes the socket; idempotent."""
        self._mark_closed("closed by this side")

    def _mark_closed(self, reason: str) -> None:
        if self._closed_reason is None:
            self._closed_reason = reason
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
        except OSError:
            pass
        self._sock.close()

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    def __enter__(self) -> "Link":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- public messaging ------------------------------------------------------------

    def request(self, dst: str, topic: str, h: Optional[dict] = None,
                body_parts: Iterable = (), timeout: Optional[float] = None,
                sink: Optional[BodySink] = None) -> Tuple[dict, Any]:
        """Sends a request and waits for its reply; returns (reply HEAD, body).

        The body is a bytearray, or with `sink` (see BodySink) what ``sink.finish()``
        returns. The sink only sees an ok reply that has a body; any other reply's body
        comes back as a bytearray (normally empty), so ``check_reply`` reports its status.
        `timeout` None waits for ever (the parent answers ``link.get_task`` only when a
        task exists). On LinkTimeout the request stays pending: finish it with
        ``wait_reply`` (its reply must not be lost, e.g. a task the parent handed out).
        Also raises StreamAborted, LinkClosed or ProtocolError; a non-ok status is
        returned, not raised (see ``check_reply``).
        """
        with self._request_lock:
            self._check_open()
            if self._pending is not None:
                raise WireError(f"the reply to '{self._pending.topic}' is still pending; "
                                "call wait_reply() before a new request")
            req_id = next(self._req_ids)
            with self._send_lock:
                stream_id = self._next_stream_id()
            self._pending = _PendingReply(req_id, stream_id, topic, sink)
            try:
                self._send_message(self._head("req", dst, topic, h, req_id), body_parts,
                                   stream_id, self._pending)
            except BaseException:
                self._pending = None
                raise
            return self._wait(timeout)

    def wait_reply(self, timeout: Optional[float] = None) -> Tuple[dict, Any]:
        """Keeps waiting for the reply of a request that timed out (into its sink, if it
        was given one)."""
        with self._request_lock:
            self._check_open()
            if self._pending is None:
                raise WireError("no request is waiting for its reply")
            return self._wait(timeout)

    @property
    def pending(self) -> bool:
        """True if a timed-out request still waits for its reply."""
        return self._pending is not None

    def fire(self, dst: str, topic: str, h: Optional[dict] = None) -> None:
        """Sends a fire-and-forget message without a body."""
        self._check_open()
        self._send_message(self._head("fire", dst, topic, h, None), ())

    # -- sending -----------------------------------------------------------------------

    def _head(self, kind: str, dst: str, topic: str, h: Optional[dict], req_id) -> dict:
        head = {"kind": kind, "topic": topic, "src": self.name, "dst": dst, "hops": 0,
                "h": h if h is not None else {}}
        if req_id is not None:
            head["req_id"] = req_id
        return head

    def _next_stream_id(self) -> int:
        sid = next(self._stream_ids) & _U32_MAX
        return sid or self._next_stream_id()  # 0 is reserved for connection frames

    def _send_message(self, head: dict, body_parts: Iterable, sid: Optional[int] = None,
                      pending: Optional["_PendingReply"] = None) -> int:
        """Writes HEAD then DATA frames (≤ STREAMING_CHUNK_SIZE each), END on the last,
        within the peer's flow-control credit. A body is only sent by ``request`` (the
        reader), which passes its `pending` reply so frames read while waiting for
        credit are not lost. The send lock is taken per frame: ``fire`` and PONG may
        interleave with a long body."""
        views = _as_byte_views(body_parts)
        body_size = sum(v.nbytes for v in views)
        head["body_size"] = body_size
        payload = encode_json(head)
        if len(payload) > MAX_HEADER_BYTES:
            raise ValueError(f"header of '{head.get('topic')}' is {len(payload)} bytes, over "
                             f"the {MAX_HEADER_BYTES}-byte limit; move data into the body")
        assert body_size == 0 or pending is not None, "only request() sends a body"
        with self._send_lock:
            if sid is None:
                sid = self._next_stream_id()
            self._write([encode_header(FrameType.HEAD, sid, len(payload), 0 if body_size else FLAG_END),
                         payload])
        if body_size:
            self._credit[sid] = min(body_size, self.peer_window)
            try:
                self._send_body(sid, views, body_size, pending)
            finally:
                self._credit.pop(sid, None)
        return sid

    def _send_body(self, sid: int, views: List[memoryview], body_size: int,
                   pending: "_PendingReply") -> None:
        sent = 0
        for chunk in _chunks(views, STREAMING_CHUNK_SIZE):
            while chunk:
                allowed = self._await_credit(sid, sent, pending)
                part, chunk = _split(chunk, allowed - sent)
                n = sum(v.nbytes for v in part)
                sent += n
                flags = FLAG_END if sent == body_size else 0
                with self._send_lock:
                    self._write([encode_header(FrameType.DATA, sid, n, flags)] + part)

    def _await_credit(self, sid: int, sent: int, pending: "_PendingReply") -> int:
        """Returns the credit limit of stream `sid` once it exceeds `sent`, reading and
        handling frames meanwhile. Gives up (ABORT, LinkTimeout) after
        ACK_PROGRESS_TIMEOUT seconds without new credit."""
        if self._credit[sid] > sent:
            return self._credit[sid]
        saved, self._deadline = self._deadline, time.monotonic() + ACK_PROGRESS_TIMEOUT
        try:
            while self._credit[sid] <= sent:
                try:
                    self._dispatch(self._read_header(), pending)
                except LinkTimeout:
                    message = (f"stream {sid} to '{self.peer_name}': no flow-control credit for "
                               f"{ACK_PROGRESS_TIMEOUT:g} s ({sent} body bytes sent)")
                    self._send_control(FrameType.ABORT, encode_json(
                        {"code": "timeout", "message": message}), stream_id=sid)
                    raise LinkTimeout(message) from None
        finally:
            self._deadline = saved
        return self._credit[sid]

    def _send_control(self, ftype: FrameType, payload: bytes = b"", stream_id: int = 0) -> None:
        with self._send_lock:
            self._write([encode_header(ftype, stream_id, len(payload)), payload])

    def _write(self, buffers: List) -> None:
        """Writes all buffers, vectored when the OS allows, resuming partial sends."""
        views = _as_byte_views(buffers)
        try:
            if not hasattr(self._sock, "sendmsg"):
                for view in views:
                    self._sock.sendall(view)
                return
            while views:
                sent = self._sock.sendmsg(views[:512])
                while sent:
                    if sent >= views[0].nbytes:
                        sent -= views.pop(0).nbytes
                    else:
                        views[0] = views[0][sent:]
                        sent = 0
        except OSError as e:
            self._mark_closed(f"send failed: {e}")
            raise LinkClosed(f"lost the connection to '{self.peer_name}' while sending: {e}") from e

    # -- receiving ---------------------------------------------------------------------

    def _wait(self, timeout: Optional[float]) -> Tuple[dict, Any]:
        """Runs the reader until the pending reply completes; keeps it pending on a
        timeout, drops it on any other outcome."""
        self._deadline = None if timeout is None else time.monotonic() + timeout
        try:
            result = self._await_reply(self._pending)
        except LinkTimeout:
            raise
        except BaseException:
            self._pending = None
            raise
        finally:
            self._deadline = None
        self._pending = None
        return result

    def _await_reply(self, p: "_PendingReply") -> Tuple[dict, Any]:
        """Reads frames until the reply to `p.req_id` is complete, serving PING and
        discarding anything else (other streams, replies to nobody)."""
        while not p.done:
            self._dispatch(self._read_header(), p)
        return p.head, p.body

    def _dispatch(self, fh: FrameHeader, p: "_PendingReply") -> None:
        """Handles one frame whose header was read; sets p.done when the reply to `p`
        is complete."""
        if fh.type == FrameType.HEAD:
            head = self._read_json(fh, "HEAD")
            size = self._body_size(head)
            if size > DEFAULT_WINDOW:  # we preallocate (or discard): grant it all now
                self._send_control(FrameType.CREDIT, _U64.pack(size - DEFAULT_WINDOW), fh.stream_id)
            if p.head is None and head.get("kind") == "reply" and head.get("req_id") == p.req_id:
                p.head, p.stream, p.size = head, fh.stream_id, size
                if p.sink is not None and size and head.get("status", STATUS_OK) == STATUS_OK:
                    p.sink.begin(size)
                else:
                    p.sink = None
                    p.body = bytearray(size)  # the one buffer the body lands in
                if fh.end:
                    self._finish(p)
            else:
                self._on_unexpected_head(head)
        elif fh.type == FrameType.DATA:
            if p.stream is None or fh.stream_id != p.stream or p.done:
                self._skip(fh.length)
                return
            if p.filled + fh.length > p.size:
                raise self._fatal(f"reply to '{p.topic}' carries more than its body_size "
                                  f"{p.size} bytes")
            if p.sink is None:
                self._read_into(memoryview(p.body)[p.filled:p.filled + fh.length])
                p.filled += fh.length
            else:
                self._read_into_sink(p, p.filled + fh.length)
            if fh.end:
                self._finish(p)
        elif fh.type == FrameType.ABORT:
            info = self._read_json(fh, "ABORT")
            if fh.stream_id == (p.stream if p.stream is not None else p.req_stream):
                raise StreamAborted(str(info.get("code", "aborted")), str(info.get("message", "")))
        else:
            self._on_control(fh)

    def _read_into_sink(self, p: "_PendingReply", end: int) -> None:
        """Reads the DATA payload up to body offset `end` into the views of `p.sink`. If
        the sink refuses, the rest of the payload is skipped first, so the link stays in
        step (later DATA of the reply is skipped by stream id once it is no longer
        pending)."""
        while p.filled < end:
            try:
                views = _as_byte_views(p.sink.views(p.filled, end - p.filled))
                n = sum(v.nbytes for v in views)
                if not 0 < n <= end - p.filled:
                    raise ValueError(f"body sink gave views of {n} bytes for the next "
                                     f"{end - p.filled} bytes of '{p.topic}'")
            except BaseException:
                self._skip(end - p.filled)
                raise
            for view in views:
                self._read_into(view)
                p.filled += view.nbytes

    def _finish(self, p: "_PendingReply") -> None:
        if p.filled != p.size:
            raise self._fatal(f"reply to '{p.topic}' ended after {p.filled} of its "
                              f"{p.size} body bytes")
        if p.sink is not None:
            p.body, p.sink = p.sink.finish(), None
        p.done = True

    def _on_control(self, fh: FrameHeader) -> None:
        """PING → PONG; CREDIT extends one of our streams; PONG is ignored; GOAWAY
        closes; a second HELLO is a protocol error."""
        if fh.type == FrameType.PING:
            self._send_control(FrameType.PONG)
        elif fh.type == FrameType.CREDIT:
            payload = bytearray(_U64.size)
            self._read_into(memoryview(payload))
            if fh.stream_id in self._credit:  # else it ended already: credit crossed our END
                self._credit[fh.stream_id] = min(_U64_MAX, self._credit[fh.stream_id]
                                                 + _U64.unpack(payload)[0])
        elif fh.type == FrameType.PONG:
            self._skip(fh.length)
        elif fh.type == FrameType.GOAWAY:
            reason = self._read_json(fh, "GOAWAY").get("reason", "")
            self._mark_closed(f"GOAWAY: {reason}")
            raise LinkClosed(f"'{self.peer_name}' closed the link: {reason or 'no reason'}")
        else:
            raise self._fatal(f"unexpected {fh.type.name} frame after the handshake")

    def _on_unexpected_head(self, head: dict) -> None:
        """A script serves no topics: answer requests with no_handler so the sender does
        not wait; drop fires and stale replies (their DATA is skipped by stream id)."""
        if head.get("kind") != "req":
            return
        reply = {"kind": "reply", "topic": head.get("topic", ""), "src": self.name,
                 "dst": head.get("src", ""), "req_id": head.get("req_id", 0), "hops": 0,
                 "status": "no_handler", "h": {},
                 "error": f"'{self.name}' (a training script) serves no topic "
                          f"'{head.get('topic')}'"}
        self._send_message(reply, ())

    def _read_header(self) -> FrameHeader:
        self._read_into(memoryview(self._header_buf), between_frames=True)
        try:
            return decode_header(self._header_buf)
        except ProtocolError as e:
            raise self._fatal(str(e)) from None

    def _read_json(self, fh: FrameHeader, what: str) -> dict:
        payload = bytearray(fh.length)  # bounded by decode_header's limit
        self._read_into(memoryview(payload))
        try:
            return decode_json(payload, what)
        except ProtocolError as e:
            raise self._fatal(str(e)) from None

    def _skip(self, n: int) -> None:
        scratch = memoryview(self._scratch)
        while n:
            take = min(n, len(scratch))
            self._read_into(scratch[:take])
            n -= take

    def _read_into(self, view: memoryview, between_frames: bool = False) -> None:
        """Fills `view` exactly, honouring the current wait's deadline. A timeout
        between frames leaves the link usable; inside a frame, giving up would
        desynchronise the stream, so the link is closed."""
        got = 0
        while got < len(view):
            if self._deadline is not None and not self._wait_readable(self._deadline):
                if got or not between_frames:
                    raise self._fatal("timed out in the middle of a frame")
                raise LinkTimeout(f"no reply from '{self.peer_name}' within the timeout")
            try:
                n = self._sock.recv_into(view[got:])
            except OSError as e:
                self._mark_closed(f"receive failed: {e}")
                raise LinkClosed(f"lost the connection to '{self.peer_name}': {e}") from e
            if n == 0:
                self._mark_closed("peer closed the connection")
                raise LinkClosed(f"'{self.peer_name or 'peer'}' closed the connection")
            got += n

    def _wait_readable(self, deadline: float) -> bool:
        """poll() rather than select() so a script with >1024 open files still works."""
        remaining = max(0.0, deadline - time.monotonic())
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(self._sock, select.POLLIN)
            return bool(poller.poll(remaining * 1000.0))
        return bool(select.select([self._sock], [], [], remaining)[0])

    def _body_size(self, head: dict) -> int:
        size = head.get("body_size", 0)
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= _U64_MAX:
            raise self._fatal(f"HEAD body_size {size!r} is not a u64")
        return size

    def _fatal(self, message: str) -> ProtocolError:
        self._mark_closed(message)
        return ProtocolError(f"link to '{self.peer_name}': {message}; connection closed")

    def _check_open(self) -> None:
        if self._closed_reason is not None:
            raise LinkClosed(f"the link to '{self.peer_name}' is closed ({self._closed_reason})")

