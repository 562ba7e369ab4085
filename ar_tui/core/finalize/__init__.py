"""The morning after a night: its changes as a reviewable branch
(`branch`), read from the run dir (`changes`), and which of them still
matter on top of the others (`ablation`). `ar-tui finalize` wires them."""
