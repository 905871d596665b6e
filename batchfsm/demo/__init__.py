"""``batchfsm demo``: five jobs meet five fates against the in-process sandbox.

:mod:`~batchfsm.demo.scenario` is the script (jobs, fates, timings),
:mod:`~batchfsm.demo.run` runs it, :mod:`~batchfsm.demo.report` summarises it. A top
layer like ``cli``: it may import the library; the library never imports it.
"""
