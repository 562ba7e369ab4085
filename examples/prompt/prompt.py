"""The prompt under test: a system prompt that makes a model label the
sentiment of a product review with one word. The agent edits this file.
score.py (fixed) reads these constants without running this file, sends each
review of evalset.jsonl through the Messages API and counts exact answers.
"""

PROMPT = """You read product reviews. Say whether the review is positive or negative."""
MAX_TOKENS = 16  # the longest answer the model may give: enough for a word, little to pay for
