"""The ``batchfsm`` command line: :mod:`~batchfsm.cli.main` is the entry point, one
module per command group, :mod:`~batchfsm.cli.views` holds every ``--json`` shape,
:mod:`~batchfsm.cli.output` and :mod:`~batchfsm.cli.progress` what people see.

The top layer: it may import anything; nothing in the library imports it.
"""
