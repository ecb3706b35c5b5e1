"""A scripted language model for the tests: an OpenAI-compatible chat completions endpoint
(POST /v1/chat/completions) and an Amazon Bedrock Converse endpoint
(POST /model/MODEL/converse) on a free loopback port, answering what the test queued.

    with LlmServer() as llm:
        llm.answer("Hello!")                                  # a text answer
        llm.tool_call(("lookup_order", {"order_id": "A-1"}))  # the model asks for a tool
        llm.answer('{"x": 1', finish_reason="length")         # cut off
        llm.raw(200, b"not json")                             # a malformed answer
        llm.raw(503, b'{"error": {"message": "overloaded"}}')
        llm.truncated()                                       # the connection drops midway
        llm.answer("late", delay=3)                           # a slow model
        ... llm.url ...  (base_url for openai), llm.requests (what arrived, in order)

Each queued answer serves one request, in order; with none left the server answers 500
"no scripted answer". Python 3 standard library only.
"""

import http.server
import json
import socketserver
import threading
import time


class LlmServer:
    def __init__(self):
        self.requests = []  # {"path", "headers" (lower-case names), "body" (bytes), "json"}
        self.stream_broken = False  # the client went away while an answer streamed
        self.stream_broken_event = threading.Event()  # set with stream_broken
        self._answers = []
        self._lock = threading.Lock()
        self._count = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The head and the body go out in separate writes: without this, each answer
            # waits for the client's delayed ACK (some 40 ms).
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                with owner._lock:
                    owner.requests.append({
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                        "json": parsed,
                    })
                    answer = owner._answers.pop(0) if owner._answers else None
                    owner._count += 1
                if answer is None:
                    return self._send(500, b'{"error": {"message": "no scripted answer"}}')
                if answer.get("delay"):
                    time.sleep(answer["delay"])
                kind = answer["kind"]
                if kind == "raw":
                    return self._send(answer["status"], answer["body"])
                if kind == "truncated":
                    data = b'{"choices": [{"message": {"role": "assistant", "content": "Hal'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data) + 500))
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if parsed and parsed.get("stream") and not answer.get("whole"):
                    if kind == "answer":
                        return self._stream(answer)
                    if kind == "tools":
                        return self._stream_tools(answer)
                bedrock = "/converse" in self.path
                payload = owner._bedrock(answer) if bedrock else owner._openai(answer)
                self._send(200, json.dumps(payload).encode())

            def _chunk(self, data):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _stream(self, a):
                """The answer as OpenAI's server-sent events, in the pieces asked for."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                if a.get("break_after"):
                    self.send_header("Connection", "close")  # not kept for the next request
                self.end_headers()
                pieces = a.get("pieces") or [a["content"]]
                try:
                    self._chunk(b": keep-alive\n\n")
                    for i, piece in enumerate(pieces):
                        if i == 1 and a.get("gate") is not None:
                            a["gate"].wait(20)
                        event = {"id": "chatcmpl-s", "object": "chat.completion.chunk",
                                 "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                        self._chunk(b"data: " + json.dumps(event).encode() + b"\n\n")
                        if a.get("break_after") == i + 1:
                            self.close_connection = True
                            self.wfile.write(b"0\r\n\r\n")
                            return
                    if a.get("stream_error"):
                        self._chunk(b'data: {"error": {"message": "%s"}}\n\n' % a["stream_error"].encode())
                    else:
                        end = {"choices": [{"index": 0, "delta": {}, "finish_reason": a.get("finish_reason", "stop")}]}
                        self._chunk(b"data: " + json.dumps(end).encode() + b"\n\n")
                        p, c = a["usage"]
                        usage = {"choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c}}
                        self._chunk(b"data: " + json.dumps(usage).encode() + b"\r\n\r\n")
                        self._chunk(b"data: [DONE]\n\n")
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    owner.stream_broken = True
                    owner.stream_broken_event.set()

            def _stream_tools(self, a):
                """Tool calls as OpenAI streams them: the text the model says first (`say`),
                then each call named in one chunk and its arguments in two more."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

                def event(delta, finish=None):
                    e = {"id": "chatcmpl-t", "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                    self._chunk(b"data: " + json.dumps(e).encode() + b"\n\n")
                try:
                    event({"role": "assistant", "content": None})
                    if a.get("say"):
                        event({"content": a["say"]})
                    for i, (name, args) in enumerate(a["calls"]):
                        text = json.dumps(args)
                        event({"tool_calls": [{"index": i, "id": f"call_{owner._count}_{i}", "type": "function",
                                               "function": {"name": name, "arguments": ""}}]})
                        half = len(text) // 2
                        for part in (text[:half], text[half:]):
                            event({"tool_calls": [{"index": i, "function": {"arguments": part}}]})
                    event({}, "tool_calls")
                    p, c = a["usage"]
                    self._chunk(b"data: " + json.dumps({"choices": [], "usage": {
                        "prompt_tokens": p, "completion_tokens": c}}).encode() + b"\n\n")
                    self._chunk(b"data: [DONE]\n\n")
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    owner.stream_broken = True
                    owner.stream_broken_event.set()

            def _send(self, status, body):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                pass

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    # -- scripting

    def answer(self, content, prompt_tokens=11, completion_tokens=7, finish_reason="stop",
               delay=0, pieces=None, gate=None, break_after=None, stream_error=None, whole=False):
        """A text answer. To a request with "stream": true it is sent as server-sent events:
        `pieces` (default: the whole content in one), waiting for `gate` (a threading.Event)
        before the second piece; `break_after` ends the body after that many pieces without
        [DONE]; `stream_error` sends an error event instead of the end; `whole` ignores
        "stream" and answers one JSON document."""
        self._queue({"kind": "answer", "content": content, "usage": (prompt_tokens, completion_tokens),
                     "finish_reason": finish_reason, "delay": delay, "pieces": pieces, "gate": gate,
                     "break_after": break_after, "stream_error": stream_error, "whole": whole})

    def tool_call(self, *calls, prompt_tokens=20, completion_tokens=5, arguments_text=None,
                  say=None, whole=False):
        """calls: (name, arguments) pairs; the model asks for all of them at once.
        `arguments_text` sends that text as the first call's arguments instead (not when
        streamed). To a request with "stream": true the calls are streamed in pieces, after
        the text `say`; `whole` answers one JSON document instead."""
        self._queue({"kind": "tools", "calls": list(calls), "usage": (prompt_tokens, completion_tokens),
                     "arguments_text": arguments_text, "say": say, "whole": whole})

    def raw(self, status, body, delay=0):
        self._queue({"kind": "raw", "status": status, "body": body, "delay": delay})

    def truncated(self):
        self._queue({"kind": "truncated"})

    def _queue(self, a):
        with self._lock:
            self._answers.append(a)

    def pending(self):
        with self._lock:
            return len(self._answers)

    # -- answer shapes

    def _openai(self, a):
        message = {"role": "assistant", "content": None}
        finish = a.get("finish_reason", "stop")
        if a["kind"] == "answer":
            message["content"] = a["content"]
        else:
            calls = []
            for i, (name, args) in enumerate(a["calls"]):
                text = json.dumps(args)
                if i == 0 and a.get("arguments_text") is not None:
                    text = a["arguments_text"]
                calls.append({"id": f"call_{self._count}_{i}", "type": "function",
                              "function": {"name": name, "arguments": text}})
            message["tool_calls"] = calls
            message["content"] = a.get("say")
            finish = "tool_calls"
        p, c = a["usage"]
        return {"id": f"chatcmpl-{self._count}", "object": "chat.completion", "model": "scripted",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}}

    def _bedrock(self, a):
        content = []
        stop = {"stop": "end_turn", "length": "max_tokens"}.get(a.get("finish_reason", "stop"), "end_turn")
        if a["kind"] == "answer":
            content.append({"text": a["content"]})
        else:
            for i, (name, args) in enumerate(a["calls"]):
                content.append({"toolUse": {"toolUseId": f"tooluse_{self._count}_{i}", "name": name,
                                            "input": args}})
            stop = "tool_use"
        p, c = a["usage"]
        return {"output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop,
                "usage": {"inputTokens": p, "outputTokens": c, "totalTokens": p + c},
                "metrics": {"latencyMs": 1}}

    # -- life cycle

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
