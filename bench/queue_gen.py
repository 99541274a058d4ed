#!/usr/bin/env python3
"""Writes a large tinymta queue for bench/queue_scale, in the format src/queue/spool.rs
documents (version 2: `tinymta-queue 2`, a fixed-width `headers-at` record, the
envelope, a blank line, the content) plus a status record per deferred message.

    queue_gen.py STATE_DIR DEFERRED DUE [SIZE]

DEFERRED messages get a status file (1 attempt, next attempt 10-60 minutes from now,
a last reason); DUE ones get none, so the daemon tries them at once. Files are written
without fsync: this is a benchmark fixture, not a queue that must survive a crash.
IDs are the daemon's own form (8 hex digits of arrival time, 6 more) and unique.
"""
import os
import random
import sys
import time


def main():
    state, deferred, due = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 1024
    root = os.path.join(state, "queue")
    for sub in ("tmp", "messages", "status"):
        os.makedirs(os.path.join(root, sub), mode=0o700, exist_ok=True)
    now = int(time.time())
    rnd = random.Random(10)
    body = ("x" * 70 + "\r\n") * max(1, size // 72)
    for n in range(deferred + due):
        arrival = now - rnd.randrange(1, 2 * 86_400)
        qid = "%08X%06X" % (arrival & 0xFFFFFFFF, n)
        content = (
            "Received: from client.test ([127.0.0.1])\r\n"
            f"Message-ID: <{qid}@bench.test>\r\n"
            f"Subject: queue scale {n}\r\n\r\n{body}"
        )
        env = (
            "tinymta-queue 2\nheaders-at %020d\nid %s\narrival %d\n"
            "sender bench@bench.test\nclient client.test[127.0.0.1]\nprotocol ESMTP\n"
            "rcpt user%d@unreachable.test\n\n" % (0, qid, arrival, n % 1000)
        )
        with open(os.path.join(root, "messages", qid), "w", newline="") as f:
            f.write(env + content)
        if n < deferred:
            status = (
                "attempts 1\nnext %d\nreason 4.4.1 connect to 127.0.0.1[127.0.0.1]:1: "
                "Connection refused\n" % (now + rnd.randrange(600, 3600))
            )
            with open(os.path.join(root, "status", qid), "w") as f:
                f.write(status)


if __name__ == "__main__":
    main()
