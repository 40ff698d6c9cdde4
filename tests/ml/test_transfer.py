"""ml.transfer: the course's transfer examples and its rule (online when it takes about a week or less)."""

from __future__ import annotations

import json

import pytest

from ml import transfer


def plan(size: str, bandwidth: str) -> dict:
    return transfer.plan(transfer.parse_size(size), transfer.parse_bandwidth(bandwidth))


def test_the_issue_example_goes_online():
    result = plan("40TB", "1Gbps")
    assert 4 < result["online_days"] < 5 and result["advice"] == "online"


def test_one_petabyte_over_100_mbps_takes_about_three_years_and_goes_by_appliance():
    # the course: "1 PB of data ... 100Mbps network: 1095 days (3 years) ... Appliance: 43 days"
    result = plan("1PB", "100Mbps")
    assert 1000 < result["online_days"] < 1200
    assert result["appliance_days"] == pytest.approx(43, abs=1)
    assert result["advice"] == "appliance"


def test_about_sixty_terabytes_at_one_gbps_is_the_threshold():
    # the course: "Threshold is about 60TiB of data" - at 1 Gbps that is about a week online
    assert 6 < plan("60TiB", "1Gbps")["online_days"] < 8
    assert plan("50TB", "1Gbps")["advice"] == "online"
    assert plan("100TB", "1Gbps")["advice"] == "appliance"  # 12 days (Google's table: 12 days)


@pytest.mark.parametrize(("size", "bandwidth"), [
    ("60TB", "500Mbps"),  # "If you have 60+TB to load"
    ("1TB", "10Mbps"),  # "If you have 1TB+ data and a 10 Mbps network"
    ("5TB", "5Mbps"),  # "less than 10TB to load but a slow network connection (less than 10 Mbps)"
])
def test_the_courses_appliance_cases(size, bandwidth):
    result = plan(size, bandwidth)
    assert result["online_days"] > transfer.WEEK_DAYS and result["advice"] == "appliance"


def test_small_transfers_go_online():
    assert plan("10GB", "100Mbps")["advice"] == "online"
    assert plan("1TB", "1Gbps")["online_days"] * 24 == pytest.approx(2.8, abs=0.1)  # Google's table: 3 hrs


def test_units():
    assert transfer.parse_size("60TiB") == 60 * 2**40
    assert transfer.parse_size("1.5 PB") == 1.5e15
    assert transfer.parse_bandwidth("1Gbps") == 1e9
    assert transfer.parse_bandwidth("10 Mbit/s") == 1e7
    assert transfer.parse_bandwidth("100MB/s") == 8e8  # capital B: bytes
    for bad in ("40", "40 parsecs", "lots"):
        with pytest.raises(ValueError):
            transfer.parse_size(bad) if bad != "40" else transfer.parse_bandwidth(bad)


def test_cli_prints_both_times_and_the_advice(capsys):
    assert transfer.main(["--size", "40TB", "--bandwidth", "1Gbps"]) == 0
    out = capsys.readouterr().out
    assert "online transfer:     4.6 days" in out and "transfer appliance:" in out
    assert "advice: ONLINE" in out and "about a week or less" in out
    assert transfer.main(["--size", "100TB", "--bandwidth", "1Gbps"]) == 0
    assert "not quicker" in capsys.readouterr().out  # said when the appliance is slower too
    assert transfer.main(["--size", "1PB", "--bandwidth", "100Mbps", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["advice"] == "appliance"
    assert transfer.main(["--size", "1PB", "--bandwidth", "fast"]) == 2
    assert "bandwidth 'fast'" in capsys.readouterr().err
