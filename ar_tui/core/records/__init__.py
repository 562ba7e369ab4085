"""What a run leaves on disk: its directory layout (`rundir`), the ledger
and event log (`ledger`), and the experiments' commits (`git`)."""
