#!/usr/bin/env python3
"""dkimpy and authheaders (PyPI, installed into .venv by tests/run) for tests/dkim.rs:
the independent DKIM implementation tinymta's signer and verifier are held to. The
message is read from standard input; keys are looked up through the test's unbound
(dnspython aimed at --dns), never the system resolver.

  dkimpy.py sign --key PEM --domain D --selector S --algorithm rsa-sha256|ed25519-sha256
                 [--canon HEADER/BODY] [--length] [--headers from:to:...]
      prints the DKIM-Signature field dkimpy makes
  dkimpy.py verify --dns HOST:PORT
      one line per DKIM-Signature, top first: "pass", or "fail: why"
  dkimpy.py authres --dns HOST:PORT --authserv-id ID
      the Authentication-Results field authheaders makes (it judges the first signature)
"""
import argparse
import base64
import logging
import re
import sys

import dkim
import dns.resolver


def txt_lookup(addr):
    """dkimpy's dnsfunc: the first TXT record at a name, strings joined, or None."""
    host, port = addr.rsplit(":", 1)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)
    resolver.timeout = 2
    resolver.lifetime = 5

    def lookup(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        try:
            answer = resolver.resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(answer[0].strings)

    return lookup


def private_key(path, algorithm):
    """dkimpy wants a PKCS#1 PEM for RSA and the base64 32-octet seed for Ed25519;
    the seed is the last 32 octets of a PKCS#8 Ed25519 key (RFC 8410)."""
    pem = open(path, "rb").read()
    if algorithm == "ed25519-sha256":
        body = re.search(rb"-----\n(.*?)\n-----", pem, re.S).group(1)
        return base64.b64encode(base64.b64decode(body)[-32:])
    return pem


def sign(args, msg):
    kwargs = {}
    if args.headers:
        kwargs["include_headers"] = [h.encode() for h in args.headers.split(":")]
    field = dkim.sign(
        msg,
        args.selector.encode(),
        args.domain.encode(),
        private_key(args.key, args.algorithm),
        canonicalize=tuple(c.encode() for c in args.canon.split("/")),
        signature_algorithm=args.algorithm.encode(),
        length=args.length,
        **kwargs,
    )
    sys.stdout.buffer.write(field)


class Errors(logging.Handler):
    """Keeps what dkimpy logs about a failure, for the test's messages."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def verify(args, msg):
    lookup = txt_lookup(args.dns)
    count = len(re.findall(rb"(?im)^dkim-signature:", msg.split(b"\r\n\r\n", 1)[0]))
    for i in range(count):
        log = Errors()
        logger = logging.getLogger("dkimpy-test-%d" % i)
        logger.addHandler(log)
        logger.setLevel(logging.DEBUG)
        try:
            ok = dkim.DKIM(msg, logger=logger).verify(idx=i, dnsfunc=lookup)
            why = (log.lines or ["verify returned False"])[-1]
        except dkim.DKIMException as e:
            ok, why = False, "%s: %s" % (type(e).__name__, e)
        print("pass" if ok else "fail: " + why.replace("\n", " "))


def authres(args, msg):
    import authheaders

    print(
        authheaders.authenticate_message(
            msg,
            args.authserv_id,
            spf=False,
            dkim=True,
            dmarc=False,
            arc=False,
            dnsfunc=txt_lookup(args.dns),
        )
    )


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sign")
    s.add_argument("--key", required=True)
    s.add_argument("--domain", required=True)
    s.add_argument("--selector", required=True)
    s.add_argument("--algorithm", required=True, choices=["rsa-sha256", "ed25519-sha256"])
    s.add_argument("--canon", default="relaxed/simple")
    s.add_argument("--length", action="store_true")
    s.add_argument("--headers")
    v = sub.add_parser("verify")
    v.add_argument("--dns", required=True)
    a = sub.add_parser("authres")
    a.add_argument("--dns", required=True)
    a.add_argument("--authserv-id", required=True)
    args = p.parse_args()
    msg = sys.stdin.buffer.read()
    {"sign": sign, "verify": verify, "authres": authres}[args.cmd](args, msg)


if __name__ == "__main__":
    main()
