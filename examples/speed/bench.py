"""Times sort.py: fixed, the agent never edits it.

First the whole test suite (test_sort.py) runs; any failure ends the run with
an error, so ar-tui records a crash whatever the time. Then the same
workload (a seeded mix of random, partly sorted and duplicate-heavy lists) is
sorted REPEATS times and the fastest time is the metric: the minimum is the
least noisy estimate of what the code costs, the rest is the machine.
"""

import random
import sys
import time
import unittest

REPEATS = 7
METRIC = "sort_seconds"


def workload():
    rng = random.Random(12345)
    lists = [[rng.random() for _ in range(20_000)],
             [rng.randint(0, 100) for _ in range(20_000)],
             sorted(rng.random() for _ in range(10_000)) + [rng.random() for _ in range(10_000)]]
    return lists


def run_tests():
    suite = unittest.defaultTestLoader.loadTestsFromName("test_sort")
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=1).run(suite)
    if not result.wasSuccessful():
        failed = len(result.failures) + len(result.errors)
        raise AssertionError(f"{failed} test(s) of test_sort.py failed; the time does not count")


def main():
    run_tests()
    from sort import sort

    lists = workload()
    best = float("inf")
    for repeat in range(REPEATS):
        started = time.perf_counter()
        for items in lists:
            sort(items)
        best = min(best, time.perf_counter() - started)
        print(f"repeat {repeat + 1}/{REPEATS}: {time.perf_counter() - started:.4f} s", flush=True)
    print("---")
    print(f"{METRIC}: {best:.6f}")


if __name__ == "__main__":
    main()
