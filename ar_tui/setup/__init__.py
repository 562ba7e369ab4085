"""`ar-tui init`: a first `autoresearch.toml`, written from the repository itself.

- `discover`: the entry point, the editable and protected files, the data git ignores;
- `metric`: which number the script's output reports, its pattern and direction;
- `dry_run`: one confined run of the command, to read that output and time it;
- `found`: a choice with its reason (`Found`);
- `command`: the subcommand, which asks, writes the commented file and says why.
"""
