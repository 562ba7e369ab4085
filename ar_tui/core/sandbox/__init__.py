"""The sandbox: every run of code the agent may have written is confined.

`backends` (bubblewrap, Landlock, sandbox-exec) turn a `SandboxPolicy` into
a command line; `launch` is the no-root launcher that Landlock runs through;
`policy` says what each run may read and write (`Confinement`).
"""
