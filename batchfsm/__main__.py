"""``python -m batchfsm``: the ``batchfsm`` command, for environments without the
console script on PATH."""

from batchfsm.cli.main import entrypoint

if __name__ == "__main__":
    entrypoint()
