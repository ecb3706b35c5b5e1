#!/usr/bin/env python3
"""Writes data/blacklist.csv: 10,000 blacklisted IPv4 addresses with columns ip,reason,added.

The output is deterministic (a fixed seed, no clock), so running this again reproduces the
committed file byte for byte; `git diff` after a run shows nothing unless the script changed.

The first rows are fixed addresses that tests.jsonl relies on; the rest are random public
addresses. The documentation ranges 192.0.2.0/24 and 198.51.100.0/24 (RFC 5737) are never
listed, so tests use them as clean clients; 203.0.113.0/24 holds only the fixed rows.

Usage: python3 generate-blacklist.py [OUTPUT]   (default: data/blacklist.csv beside this script)
"""

import csv
import datetime
import ipaddress
import os
import random
import sys

SEED = 20240601
COUNT = 10_000

# Addresses the example's tests use, with a reason that needs CSV quoting among them.
FIXED = [
    ("203.0.113.66", "credential stuffing", "2024-03-01"),
    ("203.0.113.77", "spam, repeated", "2024-03-02"),
    ("203.0.113.88", "scanner", "2024-03-03"),
]

REASONS = [
    "spam",
    "scanner",
    "brute force",
    "credential stuffing",
    "botnet",
    "open proxy",
    "tor exit",
    "abuse report",
    "scraping",
    "spam, repeated",
]

NEVER = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/3",
    )
]


def random_address(rng):
    while True:
        addr = ipaddress.IPv4Address(rng.getrandbits(32))
        if not any(addr in net for net in NEVER):
            return str(addr)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "data", "blacklist.csv")
    rng = random.Random(SEED)
    start = datetime.date(2023, 1, 1)
    rows = list(FIXED)
    seen = {ip for ip, _, _ in rows}
    while len(rows) < COUNT:
        ip = random_address(rng)
        if ip in seen:
            continue
        seen.add(ip)
        added = start + datetime.timedelta(days=rng.randrange(730))
        rows.append((ip, rng.choice(REASONS), added.isoformat()))
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("ip", "reason", "added"))
        w.writerows(rows)
    print(f"wrote {out}: {len(rows)} addresses", file=sys.stderr)


if __name__ == "__main__":
    main()
