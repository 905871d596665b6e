"""The ledger: one entry per request of a job, and the pure rules that settle it.

* :mod:`~batchfsm.ledger.records` — jobs, submit intents, ledger entries and the
  enumerations of their states (each defined once, here);
* :mod:`~batchfsm.ledger.result_lines` — classifying the lines of output and error files
  (both error-line shapes), streamed;
* :mod:`~batchfsm.ledger.rules` — what a line's outcome does to its entry (fates,
  attempts, precedence), as pure functions.

Pure: imports only :mod:`batchfsm.errors` and :mod:`batchfsm.fsm`. Reading and writing
entries is the store's (:mod:`batchfsm.persistence`).
"""
