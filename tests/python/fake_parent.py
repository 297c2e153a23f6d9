"""A stand-in for the ember client (the parent cell of a training script) and the
server behind it, written with plain sockets and the frame codec, serving on a thread
the ``link.*`` topics and the ``fl.get_model`` / ``fl.submit_result`` requests a script
sends to the server through its parent (docs/wire-format.md §6).

    parent = FakeParent(tasks=[({"task_name": "train", ...}, body_bytes)])
    api = ClientAPI(parent.env())
    ...
    parent.join(); assert parent.results[0][0]["h"]["task_name"] == "train"
"""

import json
import socket
import threading

from ember import _wire
from ember._wire import FLAG_END, FrameType, decode_header, encode_frame, encode_json

CHUNK = 1 << 20


class FakeParent:
    """Hands out `tasks` in order, then "end" and hangs up; serves each task's model;
    records results (fl.submit_result), reports (link.submit), logs and PONGs."""

    def __init__(self, tasks=(), site="site-1", job_id="job-1", token="tok-123",
                 ping_first=False, submit_status="ok", on_head=None):
        self.site, self.job_id, self.token = site, job_id, token
        self.tasks = list(tasks)
        self.ping_first = ping_first
        self.submit_status = submit_status
        self.on_head = on_head          # optional hook(parent, conn, head, stream_id) -> bool
        self.results, self.reports, self.logs, self.hellos = [], [], [], []
        self.models = {}                # task_id -> model bytes, for fl.get_model
        self.pongs = 0
        self.error = None
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._next_stream = 100
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def env(self, config_path=None, **extra):
        env = {"EMBER_LINK": f"127.0.0.1:{self.port}", "EMBER_LINK_TOKEN": self.token,
               "EMBER_SITE_NAME": self.site, "EMBER_JOB_ID": self.job_id,
               "EMBER_CELL_NAME": f"{self.site}.{self.job_id}"}
        if config_path:
            env["EMBER_CLIENT_CONFIG"] = str(config_path)
        env.update(extra)
        return env

    def join(self, timeout=10):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "fake parent did not finish"
        if self.error:
            raise self.error

    # -- serving -----------------------------------------------------------------------

    def _run(self):
        try:
            self._server.settimeout(20)
            conn, _ = self._server.accept()
            with conn:
                conn.settimeout(20)
                if self._handshake(conn):
                    self._serve(conn)
        except BaseException as e:  # surfaced by join()
            self.error = e
        finally:
            self._server.close()

    def _handshake(self, conn):
        fh, payload = read_frame(conn)
        assert fh.type == FrameType.HELLO, fh
        hello = json.loads(payload)
        self.hellos.append(hello)
        if hello.get("token") != self.token:
            conn.sendall(encode_frame(FrameType.GOAWAY, 0, encode_json({"reason": "bad token"})))
            return False
        conn.sendall(encode_frame(FrameType.HELLO, 0, encode_json({"name": self.site, "version": 1})))
        return True

    def _serve(self, conn):
        while True:
            msg = read_message(conn, self)
            if msg is None:
                return
            head, body, stream_id = msg
            if self.on_head and self.on_head(self, conn, head, stream_id):
                continue
            topic = head["topic"]
            if topic == "link.get_task":
                if not self._send_task(conn, head):
                    return  # "end" sent: hang up, as the job is over
            elif topic == "fl.get_model":
                self._send_model(conn, head)
            elif topic == "fl.submit_result":
                assert head["dst"] == "server", head
                self.results.append((head, bytes(body)))
                self.reply(conn, head, {}, status=self.submit_status,
                           error="" if self.submit_status == "ok" else "result rejected")
            elif topic == "link.submit":
                assert not body, "link.submit carries no params"
                self.reports.append(head)
                self.reply(conn, head, {})
            elif topic == "link.log":
                self.logs.append(head["h"])
            else:
                raise AssertionError(f"unexpected topic {topic}")

    def _send_task(self, conn, head):
        if self.ping_first:
            self.ping_first = False
            conn.sendall(encode_frame(FrameType.PING))
            conn.sendall(encode_frame(FrameType.CREDIT, 3, (1 << 20).to_bytes(8, "little")))
        if self.tasks:
            h, body = self.tasks.pop(0)
            h = dict(h, model_size=len(body))
            self.models[h.get("task_id", "")] = body
            self.reply(conn, head, h)
            return True
        self.reply(conn, head, {"task_name": "end"})
        return False

    def _send_model(self, conn, head):
        h = head["h"]
        assert head["dst"] == "server" and h["site"] == self.site, head
        body = self.models.get(h.get("task_id"))
        if body is None:
            self.reply(conn, head, {}, status="not_found", error=f"no task {h.get('task_id')}")
        else:
            self.reply(conn, head, {}, body)

    def reply(self, conn, req_head, h, body=b"", status="ok", error=""):
        """Sends a reply: HEAD, then DATA frames of ≤ 1 MiB with END on the last."""
        self._next_stream += 1
        sid = self._next_stream
        head = {"kind": "reply", "topic": req_head["topic"], "src": self.site,
                "dst": req_head["src"], "req_id": req_head["req_id"], "status": status,
                "body_size": len(body), "hops": 0, "h": h}
        if error:
            head["error"] = error
        conn.sendall(encode_frame(FrameType.HEAD, sid, encode_json(head), 0 if body else FLAG_END))
        for off in range(0, len(body), CHUNK):
            last = off + CHUNK >= len(body)
            conn.sendall(encode_frame(FrameType.DATA, sid, body[off:off + CHUNK],
                                      FLAG_END if last else 0))
        return sid


def read_exact(conn, n):
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = conn.recv(n - len(buf))
        except ConnectionResetError:  # the link closed with our frames unread
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def read_frame(conn):
    raw = read_exact(conn, _wire.HEADER_SIZE)
    if raw is None:
        return None, None
    fh = decode_header(raw)
    payload = read_exact(conn, fh.length) if fh.length else b""
    return fh, payload


def read_message(conn, parent=None):
    """(HEAD dict, body bytes, stream id) of the next message, or None at EOF.
    Checks the framing rules: body_size matches, END only on the last frame. CREDIT
    (the link grants a body over 16 MiB at its HEAD) is ignored: we send regardless."""
    while True:
        fh, payload = read_frame(conn)
        if fh is None:
            return None
        if fh.type == FrameType.CREDIT:
            continue
        if fh.type == FrameType.PONG:
            if parent is not None:
                parent.pongs += 1
            continue
        assert fh.type == FrameType.HEAD, f"expected HEAD, got {fh.type.name}"
        head = json.loads(payload)
        body = bytearray()
        end = fh.end
        while not end:
            fh2, data = read_frame(conn)
            assert fh2 is not None, "EOF inside a message"
            if fh2.type == FrameType.CREDIT:
                continue
            if fh2.type == FrameType.PONG:
                parent.pongs += 1
                continue
            assert fh2.type == FrameType.DATA and fh2.stream_id == fh.stream_id
            assert fh2.length <= CHUNK, "sender must use DATA frames of at most 1 MiB"
            body += data
            end = fh2.end
        assert len(body) == head["body_size"], (len(body), head["body_size"])
        return head, body, fh.stream_id
