"""A ЮKassa stand-in on a real local port, for tests that must stop billing at a precise
moment: it keeps payments and refunds by idempotence key as ЮKassa does (a repeated key is
answered the first request's result), and can kill a process the instant a request has
been carried out, before answering — the crash between the provider call and billing's
second transaction."""

from __future__ import annotations

import json
import os
import signal
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeYooKassa:
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)  # by ЮKassa id
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_key: dict[str, dict[str, Any]] = field(default_factory=dict)  # Idempotence-Key → answer
    keys_seen: list[str] = field(default_factory=list)
    kill_on: dict[str, int] = field(default_factory=dict)  # "payment"/"refund" → pid, once
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pay(self, payment_id: str) -> None:
        with self.lock:
            payment = self.payments[payment_id]
            payment.update(status="succeeded", paid=True, captured_at=_now())

    def create(self, kind: str, key: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The answer to a POST, and whether to kill the watched process before giving it."""
        with self.lock:
            self.keys_seen.append(key)
            if key in self.by_key:
                return self.by_key[key], False
            answer = self._new_payment(body) if kind == "payment" else self._new_refund(body)
            self.by_key[key] = answer
            pid = self.kill_on.pop(kind, None)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        return answer, pid is not None

    def _new_payment(self, body: dict[str, Any]) -> dict[str, Any]:
        payment_id = str(uuid.uuid4())
        payment = {
            "id": payment_id, "status": "pending", "paid": False, "amount": body["amount"],
            "confirmation": {"type": "redirect",
                             "confirmation_url": f"https://yoomoney.test/checkout/{payment_id}"},
            "created_at": _now(), "description": body.get("description"),
            "metadata": body.get("metadata", {}), "recipient": {"account_id": "1"},
            "refundable": False, "test": True,
        }  # fmt: skip
        self.payments[payment_id] = payment
        return dict(payment)

    def _new_refund(self, body: dict[str, Any]) -> dict[str, Any]:
        payment = self.payments[body["payment_id"]]
        refund = {
            "id": str(uuid.uuid4()), "payment_id": payment["id"], "status": "succeeded",
            "amount": body["amount"], "created_at": _now(),
        }  # fmt: skip
        payment["refunded_amount"] = body["amount"]
        self.refunds[refund["id"]] = refund
        return refund

    def payments_of(self, billing_payment_id: str) -> list[dict[str, Any]]:
        return [
            payment
            for payment in self.payments.values()
            if payment["metadata"].get("billing_payment_id") == billing_payment_id
        ]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def serve(fake: FakeYooKassa) -> ThreadingHTTPServer:
    """Listen on a free port of 127.0.0.1 in a thread; ``server.server_address[1]``."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            payment_id = self.path.rsplit("/", 1)[-1]
            with fake.lock:
                payment = fake.payments.get(payment_id)
                answer = dict(payment) if payment is not None else None
            if answer is None:
                self._answer(404, {"type": "error", "code": "not_found"})
            else:
                self._answer(200, answer)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            kind = "payment" if self.path.endswith("/payments") else "refund"
            answer, killed = fake.create(kind, self.headers["Idempotence-Key"], body)
            if killed:
                self.close_connection = True  # the caller is dead: nobody to answer
                return
            self._answer(200, answer)

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            content = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
