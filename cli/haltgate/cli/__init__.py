"""The ``haltgate`` command line: one group, one module per subcommand."""
