"""A real SMTP server for Belfry's tests (aiosmtpd).

Every accepted message is written to OUT_DIR as JSON (envelope, headers and
the decoded text and HTML parts), so tests can check what arrived.

Usage: smtp_sink.py OUT_DIR [--mode accept|tempfail:N|reject|stall] [--port N]
Prints "LISTENING <port>" once it accepts connections on 127.0.0.1.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import socket
import sys

from aiosmtpd.smtp import SMTP


class Handler:
    def __init__(self, out_dir, mode):
        self.out_dir = out_dir
        self.mode = mode
        self.tempfail_left = int(mode.split(":")[1]) if mode.startswith("tempfail:") else 0
        # A restarted server (an outage test) keeps the messages received
        # before it was stopped: number the new ones after them.
        self.count = len([f for f in os.listdir(out_dir) if f.endswith(".json")])

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.mode == "reject":
            return "550 5.1.1 <%s>: Recipient address rejected: no such user" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.tempfail_left > 0:
            self.tempfail_left -= 1
            return "451 4.3.0 Temporary failure, try again later"
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "message_id": str(msg["Message-ID"]),
            # RFC 8058 one-click unsubscribe (None when absent).
            "list_unsubscribe": msg["List-Unsubscribe"] and str(msg["List-Unsubscribe"]),
            "list_unsubscribe_post": msg["List-Unsubscribe-Post"]
            and str(msg["List-Unsubscribe-Post"]),
            "content_type": msg.get_content_type(),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
        }
        self.count += 1
        path = os.path.join(self.out_dir, "%06d.json" % self.count)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(tmp, path)
        return "250 Message accepted for delivery"


async def stall(reader, writer):
    # Accept the connection and never answer: the client must time out.
    await asyncio.sleep(3600)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--mode", default="accept")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    if args.mode == "stall":
        server = await asyncio.start_server(stall, sock=sock)
    else:
        handler = Handler(args.out_dir, args.mode)
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="sink.test", enable_SMTPUTF8=True), sock=sock
        )
    print("LISTENING %d" % sock.getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
