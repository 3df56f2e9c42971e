"""One training as several processes (DDP): the ranks Lightning's launcher starts re-run this
process's command (launch.py), and are watched so that all of them end within seconds, with one
line, when one dies or is stopped (supervision.py). A training in one process never imports this."""
