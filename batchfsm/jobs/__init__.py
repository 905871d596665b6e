"""Jobs: what a user asks for, turned into batches.

* :mod:`~batchfsm.jobs.input_file` — validate a request file and split it to the limits
  (:mod:`~batchfsm.jobs.endpoints`: which endpoints a batch may target);
* :mod:`~batchfsm.jobs.metadata` — the user's batch metadata and the two pairs batchfsm
  adds;
* :mod:`~batchfsm.jobs.intents` — a submit intent's whole life (plan, claim, upload,
  create, adopt, abandon), written down before each side effect;
* :mod:`~batchfsm.jobs.claims` — which intent owns which ledger entry;
* :mod:`~batchfsm.jobs.reconcile` — closing the intents a crash left open
  (:mod:`~batchfsm.jobs.owners`: whether an intent's owner process is gone);
* :mod:`~batchfsm.jobs.submit`, :mod:`~batchfsm.jobs.retry`, :mod:`~batchfsm.jobs.cancel`
  — the three things a user does to a job.

May import ``tracker``, ``persistence``, ``ledger``, ``fsm`` and the root's ports,
config and errors; never ``cli``, ``aws`` or ``demo``.
"""
