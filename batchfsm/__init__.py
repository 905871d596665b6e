"""batchfsm: run OpenAI Batch API jobs without losing work."""

__version__ = "0.1.0"
