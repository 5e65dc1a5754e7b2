#!/usr/bin/env python3
"""Sends mutated and random DNS messages to a running server over UDP and
TCP, rate-bounded, on loopback only, while a checker asks a valid query
every 100 ms. Prints what was sent, whether the server survived, the
checker's failures and the server's peak RSS. Used by scripts/fuzz.sh.

    fuzz.py HOST PORT PID [--packets N] [--rate PER_SECOND] [--seed S]
"""
import argparse
import ipaddress
import os
import random
import socket
import struct
import sys
import threading
import time

ZONE = "fuzz.example.com"
NAMES = ["www", "lb", "geo", "alias", "loop1", "x.wild", "a.b.wild", "nx", "sub", "a.sub",
         "big", "@", "*.wild", "deep.x.y"]
TYPES = [1, 28, 5, 15, 16, 2, 6, 33, 257, 255, 252, 251, 41, 0, 65535, 12, 43, 99]


def name(n):
    full = ZONE if n == "@" else f"{n}.{ZONE}"
    out = b""
    for label in full.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def option(code, data):
    return struct.pack(">HH", code, len(data)) + data


def query(rng):
    """A valid query of many shapes: names, types, flags, EDNS options."""
    qid = rng.randrange(65536)
    flags = rng.choice([0, 0x0100, 0x0010, 0x0120])
    q = name(rng.choice(NAMES)) + struct.pack(">HH", rng.choice(TYPES), rng.choice([1, 1, 1, 3, 255]))
    ar = b""
    if rng.random() < 0.7:
        opts = b""
        if rng.random() < 0.4:
            fam, bits = rng.choice([(1, 32), (2, 128)])
            src = rng.randrange(bits + 1)
            addr = rng.randbytes(bits // 8)
            octets = (src + 7) // 8
            a = bytearray(addr[:octets])
            if src % 8 and octets:
                a[-1] &= (0xFF << (8 - src % 8)) & 0xFF
            opts += option(8, struct.pack(">HBB", fam, src, 0) + bytes(a))
        if rng.random() < 0.4:
            opts += option(10, rng.randbytes(rng.choice([8, 8, 24, 16, 40])))
        if rng.random() < 0.2:
            opts += option(3, b"")
        if rng.random() < 0.1:
            opts += option(12, bytes(rng.randrange(64)))
        size = rng.choice([512, 1232, 4096, 0, 65535])
        ttl = (rng.choice([0, 0, 0, 1]) << 16) | (0x8000 if rng.random() < 0.3 else 0)
        ar = b"\0" + struct.pack(">HHIH", 41, size, ttl, len(opts)) + opts
    head = struct.pack(">HHHHHH", qid, flags, 1, 0, 0, 1 if ar else 0)
    return head + q + ar


def mutate(rng, msg):
    """One of several corruptions of a valid message."""
    m = bytearray(msg)
    kind = rng.randrange(10)
    if kind == 0:  # flip bits
        for _ in range(rng.randrange(1, 8)):
            i = rng.randrange(len(m))
            m[i] ^= 1 << rng.randrange(8)
    elif kind == 1:  # set bytes
        for _ in range(rng.randrange(1, 8)):
            m[rng.randrange(len(m))] = rng.randrange(256)
    elif kind == 2:  # truncate
        m = m[: rng.randrange(len(m))]
    elif kind == 3:  # append junk
        m += rng.randbytes(rng.randrange(1, 64))
    elif kind == 4:  # header counts
        struct.pack_into(">HHHH", m, 4, *(rng.choice([0, 1, 2, 255, 65535]) for _ in range(4)))
    elif kind == 5:  # a compression pointer, maybe a loop
        if len(m) > 14:
            i = rng.randrange(12, len(m) - 1)
            m[i:i + 2] = struct.pack(">H", 0xC000 | rng.choice([12, i, rng.randrange(len(m))]))
    elif kind == 6:  # label lengths out of range
        m[12] = rng.choice([63, 64, 127, 192, 255])
    elif kind == 7:  # opcode and flags
        m[2] = rng.randrange(256)
        m[3] = rng.randrange(256)
    elif kind == 8:  # an OPT record's lengths
        i = m.find(b"\x00\x00\x29")
        if i >= 0 and i + 11 <= len(m):
            struct.pack_into(">H", m, i + 9, rng.randrange(65536))
    else:  # random bytes
        m = bytearray(rng.randbytes(rng.randrange(0, 600)))
    return bytes(m)


def packet(rng):
    q = query(rng)
    r = rng.random()
    if r < 0.15:
        return q
    if r < 0.9:
        return mutate(rng, q)
    return bytes(rng.randbytes(rng.randrange(0, 1500)))


class Checker(threading.Thread):
    """Asks www A every 100 ms from another /24 than the fuzzer (so the
    fuzzer's flood does not spend its rate-limit budget)."""

    def __init__(self, host, port):
        super().__init__(daemon=True)
        self.server = (host, port)
        self.stop = threading.Event()
        self.asked = 0
        self.failed = []

    def run(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.1.0.1", 0))
        sock.settimeout(1.0)
        while not self.stop.is_set():
            self.asked += 1
            qid = self.asked & 0xFFFF
            q = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0) + name("www") + struct.pack(">HH", 1, 1)
            sock.sendto(q, self.server)
            try:
                while True:
                    r, _ = sock.recvfrom(4096)
                    if r[:2] == q[:2]:
                        break
                ok = (r[3] & 0x0F) == 0 and struct.unpack(">H", r[6:8])[0] == 1
                if not ok:
                    self.failed.append(f"check {self.asked}: rcode {r[3] & 0xF}, {len(r)} bytes")
            except socket.timeout:
                self.failed.append(f"check {self.asked}: no answer within 1 s")
            self.stop.wait(0.1)


def tcp_batch(rng, server, count):
    """One connection carrying `count` framed messages (some with lengths
    that lie), closed without reading everything."""
    s = socket.create_connection(server, timeout=2)
    s.setblocking(False)
    data = bytearray()
    for _ in range(count):
        p = packet(rng)
        length = len(p) if rng.random() < 0.95 else rng.randrange(65536)
        data += struct.pack(">H", length & 0xFFFF) + p
    try:
        s.sendall(data)
    except (BlockingIOError, OSError):
        pass
    try:
        while s.recv(65536):
            pass
    except (BlockingIOError, OSError):
        pass
    s.close()


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] not in "ZX"
    except FileNotFoundError:
        return False


def peak_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("pid", type=int)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--rate", type=int, default=25_000)
    ap.add_argument("--tcp-share", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=20261130)
    a = ap.parse_args()
    if not ipaddress.ip_address(a.host).is_loopback:
        sys.exit("fuzz.py sends to loopback addresses only")
    rng = random.Random(a.seed)
    server = (a.host, a.port)
    checker = Checker(a.host, a.port)
    checker.start()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setblocking(False)
    sent_udp = sent_tcp = 0
    start = time.monotonic()
    batch = 100
    while sent_udp + sent_tcp < a.packets:
        if not alive(a.pid):
            break
        if rng.random() < a.tcp_share / batch * 10:
            n = min(batch, a.packets - sent_udp - sent_tcp)
            try:
                tcp_batch(rng, server, n)
            except OSError:
                pass
            sent_tcp += n
        else:
            for _ in range(10):
                try:
                    udp.sendto(packet(rng), server)
                except (BlockingIOError, OSError):
                    pass
                sent_udp += 1
            try:
                while True:
                    udp.recv(65536)
            except (BlockingIOError, OSError):
                pass
        # rate bound: never ahead of the schedule
        ahead = (sent_udp + sent_tcp) / a.rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    elapsed = time.monotonic() - start
    time.sleep(0.5)
    checker.stop.set()
    checker.join()
    survived = alive(a.pid)
    print(f"packets sent: {sent_udp + sent_tcp} ({sent_udp} over UDP, {sent_tcp} over TCP) in {elapsed:.0f} s")
    print(f"server alive at the end: {'yes' if survived else 'NO'}; crashes: {0 if survived else 1}")
    print(f"checker: {checker.asked} queries, {len(checker.failed)} failures")
    for f in checker.failed[:10]:
        print(f"  {f}")
    print(f"server peak RSS: {peak_rss_kib(a.pid) / 1024:.1f} MiB")
    sys.exit(0 if survived and not checker.failed else 1)


if __name__ == "__main__":
    main()
