"""The sort's test suite: fixed, the agent never edits it. A speed-up counts
only while every test here passes (bench.py runs them first)."""

import random
import unittest

from sort import sort


class Keyed:
    """Compares by `key` only, remembers `tag`: shows whether equal items keep their order."""

    def __init__(self, key, tag):
        self.key, self.tag = key, tag

    def __lt__(self, other):
        return self.key < other.key


class SortTest(unittest.TestCase):
    def test_empty_and_single(self):
        self.assertEqual(sort([]), [])
        self.assertEqual(sort([7]), [7])

    def test_random_lists_of_every_small_length(self):
        rng = random.Random(1)
        for length in range(300):
            items = [rng.randint(-50, 50) for _ in range(length)]
            self.assertEqual(sort(items), sorted(items), f"length {length}")

    def test_large_random_floats(self):
        rng = random.Random(2)
        items = [rng.random() for _ in range(20_000)]
        self.assertEqual(sort(items), sorted(items))

    def test_presorted_reversed_and_constant(self):
        for items in (list(range(5000)), list(range(5000, 0, -1)), [3] * 5000, [1, 2] * 2500):
            self.assertEqual(sort(items), sorted(items))

    def test_strings(self):
        rng = random.Random(3)
        words = ["".join(rng.choice("abcde") for _ in range(rng.randint(0, 6))) for _ in range(3000)]
        self.assertEqual(sort(words), sorted(words))

    def test_stable(self):
        rng = random.Random(4)
        items = [Keyed(rng.randint(0, 20), tag) for tag in range(4000)]
        result = sort(items)
        expected = sorted(items, key=lambda k: k.key)
        self.assertEqual([(k.key, k.tag) for k in result], [(k.key, k.tag) for k in expected])

    def test_input_is_not_modified_and_any_iterable_works(self):
        items = [3, 1, 2]
        self.assertEqual(sort(items), [1, 2, 3])
        self.assertEqual(items, [3, 1, 2])
        self.assertEqual(sort(iter((2, 1))), [1, 2])


if __name__ == "__main__":
    unittest.main()
