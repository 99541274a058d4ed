#!/usr/bin/env python3
"""SMTP load generator with STARTTLS (stdlib only).

smtp-source speaks plaintext only; this sends COUNT messages from PROCS processes,
each message over a new connection: EHLO, STARTTLS, EHLO, MAIL, RCPT, DATA, QUIT.
The server certificate is not verified (self-signed test peers).

Prints progress to stderr and one machine-readable line to stdout:
  RESULT ok=N fail=M seconds=S rate=R tls=PROTOCOL/CIPHER
Exit status 0 when every message was accepted, 1 otherwise.
"""

import argparse
import multiprocessing as mp
import smtplib
import ssl
import sys
import time


def make_message(size, sender, rcpt, n):
    head = (
        f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: tls_load {n}\r\n"
        f"Message-ID: <tls-load-{n}-{time.time_ns()}@loadgen.test>\r\n\r\n"
    )
    line = "X" * 70 + "\r\n"
    body = ""
    while len(head) + len(body) < size:
        body += line
    return (head + body)[: max(size, len(head) + 2)].encode()


def worker(wid, count, args, start_evt, results):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ok = fail = 0
    tls_desc = ""
    first_err = ""
    start_evt.wait()
    for i in range(count):
        msg = make_message(args.size, args.sender, args.rcpt, f"{wid}-{i}")
        try:
            with smtplib.SMTP(args.host, args.port, local_hostname="loadgen.test",
                              timeout=args.timeout) as s:
                s.ehlo()
                if not args.plain:
                    code, resp = s.starttls(context=ctx)
                    if code != 220:
                        raise smtplib.SMTPException(f"STARTTLS {code} {resp!r}")
                    if not tls_desc:
                        tls_desc = f"{s.sock.version()}/{s.sock.cipher()[0]}"
                    s.ehlo()
                refused = s.sendmail(args.sender, [args.rcpt], msg)
                if refused:
                    raise smtplib.SMTPException(f"refused {refused!r}")
            ok += 1
        except Exception as e:  # noqa: BLE001 - count every failure
            fail += 1
            if not first_err:
                first_err = f"{type(e).__name__}: {e}"
    results.put((ok, fail, tls_desc, first_err))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("server", help="HOST:PORT")
    p.add_argument("-n", "--count", type=int, default=1000, help="messages in total")
    p.add_argument("-p", "--procs", type=int, default=20, help="parallel processes")
    p.add_argument("-l", "--size", type=int, default=1024, help="message size in bytes")
    p.add_argument("-f", "--from", dest="sender", default="load@loadgen.test")
    p.add_argument("-t", "--to", dest="rcpt", default="sink@example.net")
    p.add_argument("--timeout", type=float, default=30.0, help="per-connection timeout")
    p.add_argument("--plain", action="store_true", help="no STARTTLS")
    args = p.parse_args()
    host, _, port = args.server.rpartition(":")
    args.host, args.port = host.strip("[]"), int(port)

    procs = max(1, min(args.procs, args.count))
    share = [args.count // procs + (1 if i < args.count % procs else 0) for i in range(procs)]
    start_evt = mp.Event()
    results = mp.Queue()
    workers = [mp.Process(target=worker, args=(i, share[i], args, start_evt, results))
               for i in range(procs)]
    for w in workers:
        w.start()
    time.sleep(0.2)  # let the processes reach the start line
    t0 = time.monotonic()
    start_evt.set()
    collected = [results.get() for _ in workers]
    elapsed = time.monotonic() - t0
    for w in workers:
        w.join()
    ok = sum(r[0] for r in collected)
    fail = sum(r[1] for r in collected)
    tls = next((r[2] for r in collected if r[2]), "none")
    errs = [r[3] for r in collected if r[3]]
    if errs:
        print(f"tls_load: first error: {errs[0]}", file=sys.stderr)
    rate = ok / elapsed if elapsed > 0 else 0.0
    print(f"RESULT ok={ok} fail={fail} seconds={elapsed:.3f} rate={rate:.1f} tls={tls}")
    return 0 if fail == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
