"""The HTTP connection layer: uvicorn's httptools protocol with the limits it lacks. uvicorn offers no header size or
count limit with httptools (h11's size limit answers 400, not 431, and h11 parses in Python), and no header or body
timeout at all, so these few guards are written here, around the parser's own callbacks:

- A request line plus headers over max_header_bytes, or more than max_headers fields: 431 and the connection
  closed. The head is counted while it arrives, so a 48 MB header is refused after about max_header_bytes plus one
  socket read, never buffered whole; a head that completes within one read is measured exactly when it completes.
- A head not complete header_timeout_s after its first byte (or after the connection opened, for the first
  request): 408 and the connection closed (just closed if nothing arrived).
- A body not complete body_timeout_s after its head: the app answers 408 (app.read_body); one second later this
  layer closes the connection if nothing did (a route that does not read its body, a response already sent)."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .schemas import APIError
from .settings import ServeSettings

REFUSAL = "nvembed.refusal"   # scope["extensions"] key: (status, message) for the app's Guard to answer
BODY_GRACE_S = 1.0            # the app answers a slow body first; this layer closes what is left after this


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits: ServeSettings                        # set by protocol_class()
    counted: Callable[[int], None] = staticmethod(lambda status: None)   # a refusal answered here, by status
    answer_headers: tuple[tuple[bytes, bytes], ...] = ()   # on refusals here too (the Guard adds them to the app's)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.in_head, self.head_seen, self.head_bytes, self.began_in_read = True, False, 0, False
        self.head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timeout)
        self.body_timer = None

    def connection_lost(self, exc) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def _cancel_timers(self) -> None:
        for timer in (self.head_timer, self.body_timer):
            if timer is not None:
                timer.cancel()
        self.head_timer = self.body_timer = None

    def data_received(self, data: bytes) -> None:
        self.began_in_read = False
        if self.in_head:
            self.head_seen = True
        super().data_received(data)
        if not self.in_head or self.transport.is_closing():
            return
        if not self.began_in_read:       # a head that began within this read is counted from the next one
            self.head_bytes += len(data)
        if self.head_bytes > self.limits.max_header_bytes:
            self.refuse(431, f"the request line and headers exceed the limit of {self.limits.max_header_bytes} "
                             f"bytes (--max-header-bytes; {self.head_bytes} received so far)")
        elif len(self.headers or ()) > self.limits.max_headers:
            self.refuse(431, f"the request has more than {self.limits.max_headers} header fields "
                             f"(--max-headers)")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head, self.head_seen, self.head_bytes, self.began_in_read = True, True, 0, True
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timeout)

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_header_bytes:
            self.scope.setdefault("extensions", {})[REFUSAL] = (
                431, f"the request line and headers are {size} bytes, above the limit of "
                     f"{self.limits.max_header_bytes} bytes (--max-header-bytes)")
        elif len(self.headers) > self.limits.max_headers:
            self.scope.setdefault("extensions", {})[REFUSAL] = (
                431, f"the request has {len(self.headers)} header fields, above the limit of "
                     f"{self.limits.max_headers} (--max-headers)")
        super().on_headers_complete()
        self.body_timer = self.loop.call_later(self.limits.body_timeout_s + BODY_GRACE_S, self._body_timeout)

    def on_message_complete(self) -> None:
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
        super().on_message_complete()

    def _head_timeout(self) -> None:
        self.head_timer = None
        if not self.in_head or self.transport.is_closing():
            return
        if not self.head_seen:           # connected and sent nothing: nobody to answer
            self.transport.close()
            return
        self.refuse(408, f"the request's headers did not arrive within {self.limits.header_timeout_s:g} s "
                         f"(--header-timeout)")

    def _body_timeout(self) -> None:
        self.body_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def refuse(self, status: int, message: str) -> None:
        """Answer here, before any app sees the request, and close the connection."""
        self.counted(status)
        body = orjson.dumps(APIError(status, message).body())
        self.transport.write(b"".join([
            STATUS_LINE[status], *(b"%s: %s\r\n" % pair for pair in (*self.server_state.default_headers,
                                                                      *self.answer_headers)),
            b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body), body]))
        self._cancel_timers()
        self.transport.close()


def protocol_class(limits: ServeSettings, counted: Callable[[int], None],
                   headers: tuple[tuple[bytes, bytes], ...] = ()) -> type[LimitedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=` option, bound to these limits, a refusal counter and the headers
    every answer carries (the engine fingerprint)."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,),
                {"limits": limits, "counted": staticmethod(counted), "answer_headers": headers})
