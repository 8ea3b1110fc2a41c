"""benchmarks/results.py: RESULTS.md says the ratios its runs give, read by workload key.

Synthetic rounds with known ratios, so a mix-up of workloads (the renderer once unpacked them
by position) shows as a wrong number.
"""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import pytest

from benchmarks.results import T95, TARGET, Results, interval95, write_results
from tests.fixture_paths import ROOT

KEYS = ("a", "b", "a0", "c", "d")


def rounds(tps: float, server_us: float) -> list[dict[str, float]]:
    one = {"tps": tps, "server_us": server_us, "client_us": 100.0, "mean": 1.0, "p50": 1.0,
           "p95": 2.0, "p99": 3.0}
    return [one, {**one, "tps": tps * 1.1}]


def render(runs: Results, directory: Path, server_mean_ms: float = 0.05) -> str:
    """RESULTS.md for `runs`, with fixed prepared-statement, heavier-read and 1000-client
    numbers, and database query time `server_mean_ms`."""
    prepared = Results({"b": rounds(2000.0, 200.0), "a": rounds(1500.0, 250.0)},
                       {"a": "prepared a", "b": "prepared b"})
    heavier = Results({"b": rounds(1000.0, 600.0), "a": rounds(900.0, 700.0)},
                      {"a": "heavier a", "b": "heavier b"})
    path = directory / "RESULTS.md"
    write_results(path, runs, prepared, heavier, {"tps": 1.0, "mean": 1.0, "p50": 1.0, "p95": 1.0,
                                         "p99": 1.0},
                  {"calls": 10.0, "mean": server_mean_ms, "worst": 0.2}, 25, 100,
                  {"tenants": 10, "rows": 2000, "clients": 50, "seconds": 15, "rounds": 2,
                   "baseline": 2, "prepared_seconds": 10, "read_rows": 30,
                   "heavier_read_rows": 300})
    return path.read_text()


def test_results_name_each_ratio_from_its_own_workload(tmp_path: Path) -> None:
    # (b) 1000 tps; (a) 800, (a0) 700, (c) 900, (d) 950; listed in an order unlike WORKLOADS'.
    tps = {"d": 950.0, "a0": 700.0, "b": 1000.0, "c": 900.0, "a": 800.0}
    runs = Results({k: rounds(v, 300.0 if k == "b" else 400.0) for k, v in tps.items()},
                   {k: f"label {k}" for k in tps})
    text = render(runs, tmp_path)
    assert "**Ratio (a)/(b) throughput: 0.800**" in text
    assert "per round: 0.800, 0.800; mean of the rounds\n0.800, 95% interval 0.800 to 0.800" \
        in text
    assert "by CPU per transaction:\n0.800)" in text  # (b) 400 us, (a) 500 us
    assert "Target >= 0.90: **not met**. Before" in text
    assert "Before 0003:\n0.700." in text
    assert "once the tenant is set:\n0.889." in text  # (a)/(c) = 800/900
    assert "The textbook design (d): 0.950." in text
    assert "(a) adds +100 us to (b)'s\n400 us, of which +100 us is binding" in text
    assert "(a)/(b) with prepared statements: 0.750." in text
    for key in KEYS:
        assert f"| label {key} | " in text
    assert "| prepared a | 1575 | 0.750 |" in text
    # The row counts are the run's (30 and 300 here, unlike the benchmark's 20 and 200).
    assert "read a tenant's 30 latest bookings, insert one booking" in text
    assert "## A heavier read: 300 bookings" in text
    # The PgBouncer the run used, by its own --version (its first line)
    assert re.search(r"\nPgBouncer [0-9]+\.[0-9]+\.[0-9]+ \(built from Debian", text)
    # Heavier read: (a) 900 tps, (b) 1000 tps; CPU 800 us vs 700 us (client 100 us each).
    assert "(a)/(b) with a 300-booking read: 0.900 (per round: 0.900, 0.900)" in text
    assert ("(a) adds +100 us\nof CPU to (b)'s 700 us (with the 30-booking read: +100 us to\n"
            "400 us)") in text
    assert "| heavier a | 945 | 0.900 |" in text


def test_the_interval_is_students_t_over_the_rounds() -> None:
    # Two rounds, 0.7 and 0.9: mean 0.8, standard deviation 0.1414, t(1 df) 12.706.
    low, high = interval95([0.7, 0.9])
    assert round(low, 3) == round(0.8 - 12.706 * 0.141421 / 2 ** 0.5, 3)
    assert round(high, 3) == round(0.8 + 12.706 * 0.141421 / 2 ** 0.5, 3)
    # Five rounds, as a run has them (session 7's): 0.74 to 0.94.
    low, high = interval95([0.700, 0.901, 0.853, 0.885, 0.857])
    assert (round(low, 2), round(high, 2)) == (0.74, 0.94)


def test_the_committed_results_agree_with_their_own_rounds() -> None:
    # The headline of the RESULTS.md in the repository: its mean and interval are those of
    # the rounds it lists (each printed to 3 digits, so within 0.002), and its verdict is the
    # ratio's.
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    found = re.search(r"\*\*Ratio \(a\)/\(b\) throughput: ([\d.]+)\*\* \(per round: ([\d., ]+); "
                      r"mean of the rounds\s+([\d.]+), 95% interval ([\d.]+) to ([\d.]+);.*?"
                      r"Target >= 0.90: (\*\*not met\*\*|met)", text, re.DOTALL)
    assert found, "RESULTS.md no longer states the ratio, its rounds, their mean and interval"
    ratios = [float(r) for r in found[2].split(", ")]
    low, high = interval95(ratios)
    assert abs(statistics.mean(ratios) - float(found[3])) < 0.002
    assert abs(low - float(found[4])) < 0.002 and abs(high - float(found[5])) < 0.002
    assert found[6] == ("met" if float(found[1]) >= TARGET else "**not met**")


def test_the_committed_results_end_with_the_analysis_as_it_is_now() -> None:
    # A run appends ANALYSIS.md as it was then; a later edit of the analysis (a run's line in
    # its history) is copied into RESULTS.md by hand, and this says when that was forgotten.
    benchmarks = ROOT / "benchmarks"
    analysis = (benchmarks / "ANALYSIS.md").read_text()
    assert analysis.startswith("## ") and len(analysis) > 1000
    assert (benchmarks / "RESULTS.md").read_text().endswith(analysis)


def test_a_run_whose_interval_holds_the_target_says_so(tmp_path: Path) -> None:
    # (a) keeps 0.80 and then 0.98 of (b): mean 0.89, below the target, but a 95% interval
    # over two rounds that holds 0.90; the verdict must not read as settled by this run.
    tps = {"b": 1000.0, "a0": 700.0, "c": 900.0, "d": 950.0}
    runs = {k: rounds(v, 300.0) for k, v in tps.items()}
    runs["a"] = [{**runs["b"][0], "tps": 800.0}, {**runs["b"][1], "tps": 1078.0}]
    text = render(Results(runs, {k: k for k in runs}), tmp_path)
    assert "**not met** by this run's mean, though its 95% interval also holds 0.90" in text


def students_t_cdf(t: float, df: int, steps: int = 20_000) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom: its density integrated from 0
    by Simpson's rule, plus the half below 0."""
    scale = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))

    def density(x: float) -> float:
        return scale * (1 + x * x / df) ** (-(df + 1) / 2)

    h = t / steps
    inner = sum((4 if i % 2 else 2) * density(i * h) for i in range(1, steps))
    return 0.5 + h / 3 * (density(0.0) + inner + density(t))


def test_each_critical_value_is_students_t_at_97_5_percent() -> None:
    # A two-sided 95% interval leaves 2.5% above its critical value, for 1 to 10 df.
    assert sorted(T95) == list(range(1, 11))
    for df, critical in T95.items():
        assert abs(students_t_cdf(critical, df) - 0.975) < 2e-5, df


def test_a_ratio_on_the_target_meets_it(tmp_path: Path) -> None:
    tps = {"b": 1000.0, "a": 1000.0 * TARGET, "a0": 700.0, "c": 950.0, "d": 950.0}
    runs = Results({k: rounds(v, 300.0) for k, v in tps.items()}, {k: k for k in tps})
    assert "Target >= 0.90: met" in render(runs, tmp_path)
    tps["a"] = 1000.0 * TARGET - 0.5
    runs = Results({k: rounds(v, 300.0) for k, v in tps.items()}, {k: k for k in tps})
    assert "Target >= 0.90: **not met**" in render(runs, tmp_path)


@pytest.mark.parametrize("edge", [0, 1])
def test_the_interval_s_edges_count_as_holding_the_target(tmp_path: Path, edge: int) -> None:
    # Five rounds whose 95% interval starts (edge 0) or ends (1) exactly at the target, the
    # mean above or below it: either way the verdict is hedged.
    values = [0.80, 0.82, 0.84, 0.86, 0.88]
    half = T95[4] * statistics.stdev(values) / 5 ** 0.5
    assert all(map(math.isclose, interval95(values), (0.84 - half, 0.84 + half)))
    shifted = [v * TARGET / interval95(values)[edge] for v in values]  # same shape, edge at 0.90
    assert interval95(shifted)[edge] == TARGET
    tps = {"b": 1000.0, "a0": 700.0, "c": 900.0, "d": 950.0}
    base = {k: [{**rounds(v, 300.0)[0]} for _ in values] for k, v in tps.items()}
    base["a"] = [{**base["b"][0], "tps": 1000.0 * v} for v in shifted]
    text = render(Results(base, {k: k for k in base}), tmp_path)
    assert "though its 95% interval also holds 0.90" in text


@pytest.mark.parametrize(("mean_ms", "verdict"), [(49.99, "met"), (50.0, "not met")])
def test_the_seeds_50_ms_is_met_only_below_it(tmp_path: Path, mean_ms: float,
                                              verdict: str) -> None:
    tps = {"b": 1000.0, "a": 800.0, "a0": 700.0, "c": 900.0, "d": 950.0}
    runs = Results({k: rounds(v, 300.0) for k, v in tps.items()}, {k: k for k in tps})
    text = render(runs, tmp_path, server_mean_ms=mean_ms)
    assert f"Seed target: under 50 ms on average: {verdict}." in text
