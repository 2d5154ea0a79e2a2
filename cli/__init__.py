"""The ``dmpo`` command line (click). The only place that turns errors into exit codes."""
