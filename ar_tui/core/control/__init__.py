"""Watching and steering a run: the `EngineHandle` protocol (`handle`), the
one reducer every viewer folds events with (`view.RunView`), the run's Unix
socket (`server`), its other end (`client`), and an engine that outlives the
terminal (`detach`)."""
