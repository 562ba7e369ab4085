"""A stable sort in pure Python: merge sort, with short runs sorted by binary
insertion. The agent edits this file to make it faster; bench.py (fixed)
runs test_sort.py (fixed) first and times it only when every test passes.
"""

from bisect import insort_right

RUN_LENGTH = 8  # slices this long or shorter are sorted by binary insertion, not split further


def insertion_sort(items):
    """Sorted copy of a short list: each item inserted after its equals (stable)."""
    result = []
    for item in items:
        insort_right(result, item)
    return result


def merge(left, right):
    """Merge two sorted lists; on ties the left one's item comes first (stable)."""
    merged = []
    i = j = 0
    while i < len(left) and j < len(right):
        if right[j] < left[i]:
            merged.append(right[j])
            j += 1
        else:
            merged.append(left[i])
            i += 1
    merged.extend(left[i:])
    merged.extend(right[j:])
    return merged


def sort(items):
    """A sorted copy of `items`, stable, comparing with `<` only."""
    items = list(items)
    if len(items) <= RUN_LENGTH:
        return insertion_sort(items)
    middle = len(items) // 2
    return merge(sort(items[:middle]), sort(items[middle:]))
