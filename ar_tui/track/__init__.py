"""Every experiment of a night in the tracker the team already uses:
MLflow, W&B or Trackio (`--track`, `[track]`), each through its own client,
installed as an extra. The night is one parent run, each decided experiment
a child run; `track.json` in the run dir holds their ids, so a resumed night
adds to the same runs. Outside `ar_tui.core`: the engine knows nothing of it.
"""
