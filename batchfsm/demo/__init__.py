"""``batchfsm demo``: five jobs meet five fates against the in-process sandbox.

:mod:`~batchfsm.demo.scenario` is the script (jobs, fates, timings),
:mod:`~batchfsm.demo.run` runs it, :mod:`~batchfsm.demo.report` summarises it; the
command's options, printing and exit codes are :mod:`batchfsm.cli.demo`. A top layer
like ``cli``: it may import the library (and borrows cli's progress display); the
library never imports it.
"""
