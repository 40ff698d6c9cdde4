"""Transfer planner: move a data set to the cloud online or ship a Transfer Appliance?

    python -m ml.transfer --size 40TB --bandwidth 1Gbps [--efficiency 0.8] [--json]

The course's rule: transfer online when it takes about a week or less; otherwise ship an
appliance. (Its rules of thumb follow from it: 60+ TB at 1 Gbps, or 1+ TB over a 10 Mbps link,
take more than a week online.)

Online time = size x 8 / (bandwidth x efficiency). The efficiency (default 0.8: protocol overhead,
other traffic) reproduces the course's figures: 1 PB over 100 Mbps takes "3 years", 100 TB
over 1 Gbps 12 days, 60 TiB over 1 Gbps about a week.

Appliance time = turnaround (delivery, return shipping, upload at Google: 10 days) + copying
onto the appliance at 2.8 Gbps, which gives the course's example, 1 PB by appliance in 43 days.
Both are options. The advice applies the course's rule to the online time; where the appliance
is not quicker either (small data on a slow link), the report says so: its gain is then a link
not tied up for weeks.

Sizes are decimal (TB = 10^12 bytes) or binary (TiB = 2^40); bandwidths are bits per second
(Mbps, Gbps, Mbit/s) or, with a capital B, bytes (MB/s).
"""

from __future__ import annotations

import argparse
import json
import re
import sys

WEEK_DAYS = 7.0
DAY_S = 86_400.0
EFFICIENCY = 0.8
APPLIANCE_SETUP_DAYS = 10.0
APPLIANCE_COPY_BPS = 2.8e9

_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15, "eb": 10**18,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50, "eib": 2**60}
_RATE_PREFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_size(text: str) -> float:
    """'40TB', '60 TiB', '1.5PB', '500GB' → bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    unit = match and match.group(2).lower()
    if not match or unit not in _SIZE_UNITS:
        raise ValueError(f"size {text!r}: expected a number and a unit such as 40TB, 60TiB, 1PB, 500GB")
    return float(match.group(1)) * _SIZE_UNITS[unit]


def parse_bandwidth(text: str) -> float:
    """'1Gbps', '100 Mbps', '10Mbit/s' → bits per second; '100MB/s' (capital B: bytes) → x 8."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)(bps|bit/s|b/s|B/s|Bps)\s*", text)
    if not match:
        raise ValueError(f"bandwidth {text!r}: expected e.g. 1Gbps, 100Mbps, 10Mbit/s or 50MB/s")
    per_byte = 8 if match.group(3) in ("B/s", "Bps") else 1
    return float(match.group(1)) * _RATE_PREFIX[match.group(2).lower()] * per_byte


def online_days(size_bytes: float, bandwidth_bps: float, efficiency: float = EFFICIENCY) -> float:
    if bandwidth_bps <= 0 or not 0 < efficiency <= 1:
        raise ValueError("bandwidth must be positive and efficiency in (0, 1]")
    return size_bytes * 8 / (bandwidth_bps * efficiency) / DAY_S


def appliance_days(size_bytes: float, setup_days: float = APPLIANCE_SETUP_DAYS,
                   copy_bps: float = APPLIANCE_COPY_BPS) -> float:
    return setup_days + size_bytes * 8 / copy_bps / DAY_S


def plan(size_bytes: float, bandwidth_bps: float, efficiency: float = EFFICIENCY,
         setup_days: float = APPLIANCE_SETUP_DAYS, copy_bps: float = APPLIANCE_COPY_BPS) -> dict:
    """Both times and the advice (online when it takes about a week or less)."""
    online = online_days(size_bytes, bandwidth_bps, efficiency)
    appliance = appliance_days(size_bytes, setup_days, copy_bps)
    advice = "online" if online <= WEEK_DAYS else "appliance"
    return {"size_bytes": size_bytes, "bandwidth_bps": bandwidth_bps, "efficiency": efficiency,
            "online_days": online, "appliance_days": appliance, "advice": advice,
            "reason": (f"online takes {duration(online)}, about a week or less" if advice == "online" else
                       f"online would take {duration(online)}, more than a week")}


def duration(days: float) -> str:
    if days < 2:
        return f"{days * 24:.1f} hours"
    if days < 365:
        return f"{days:.1f} days"
    return f"{days:,.0f} days ({days / 365:.1f} years)"


def _human_size(size_bytes: float) -> str:
    for unit, factor in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if size_bytes >= factor:
            return f"{size_bytes / factor:.4g} {unit}"
    return f"{size_bytes:g} bytes"


def _human_rate(bps: float) -> str:
    for unit, factor in (("Tbps", 1e12), ("Gbps", 1e9), ("Mbps", 1e6), ("Kbps", 1e3)):
        if bps >= factor:
            return f"{bps / factor:.4g} {unit}"
    return f"{bps:g} bps"


def report(result: dict) -> str:
    online = "ONLINE" if result["advice"] == "online" else "TRANSFER APPLIANCE"
    note = []
    if result["advice"] == "appliance" and result["appliance_days"] >= result["online_days"]:
        note = [f"note: the appliance is not quicker here; what it saves is a link tied up for "
                f"{duration(result['online_days'])}"]
    return "\n".join([
        f"{_human_size(result['size_bytes'])} over {_human_rate(result['bandwidth_bps'])} "
        f"({result['efficiency']:.0%} of it usable):",
        f"  online transfer:     {duration(result['online_days'])}",
        f"  transfer appliance:  {duration(result['appliance_days'])} (copy, ship, upload)",
        f"advice: {online} - {result['reason']} (the course's rule: online when it takes about a week or less)",
        *note,
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.transfer", description=__doc__.splitlines()[0])
    parser.add_argument("--size", required=True, help="data set size, e.g. 40TB, 60TiB, 1PB")
    parser.add_argument("--bandwidth", required=True, help="network bandwidth, e.g. 1Gbps, 100Mbps")
    parser.add_argument("--efficiency", type=float, default=EFFICIENCY,
                        help=f"usable share of the bandwidth (default {EFFICIENCY})")
    parser.add_argument("--appliance-setup-days", type=float, default=APPLIANCE_SETUP_DAYS)
    parser.add_argument("--appliance-copy-rate", default="2.8Gbps", help="copy rate onto the appliance")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    args = parser.parse_args(argv)
    try:
        result = plan(parse_size(args.size), parse_bandwidth(args.bandwidth), args.efficiency,
                      args.appliance_setup_days, parse_bandwidth(args.appliance_copy_rate))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
