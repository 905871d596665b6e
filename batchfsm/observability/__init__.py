"""What operators watch: structured log lines (:mod:`.logs`) and metrics
(:mod:`.metrics`), for the command line, the Lambda and any host that embeds batchfsm.

A layer of its own beside the wiring: it reads the store through its port and knows
nothing of the CLI or AWS, which both use it. Nothing here runs at import, and the
optional exporters (``prometheus_client``, ``aws-lambda-powertools``) are imported only
by the call that needs them.
"""
