"""``python -m capdistill.utils.launch [torchrun args]``: torchrun, reporting a failed run in
one line.

Each rank of a capdistill tool prints its own one-line ``error:``; torchrun would then add
its traceback and failure table. Here the launch is the same (``torch.distributed.run``'s
own argument parsing and launcher) and a failure ends with one line naming the ranks and
exit codes, with the launcher's exit status.
"""
import logging
import os
import sys


def _describe(rank, failure):
    how = (f'killed by {failure.signal_name()}' if failure.exitcode < 0
           else f'exit code {failure.exitcode}')
    return f'rank {rank} ({how})'


def main(argv=None):
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(argv)
    # its per-process failure lines repeat what the one line below says
    logging.getLogger('torch.distributed.elastic.multiprocessing.api').setLevel(logging.CRITICAL)
    try:
        run(args)
    except ChildFailedError as exc:
        first, failure = exc.get_first_failure()
        later = [_describe(r, f) for r, f in sorted(exc.failures.items()) if r != first]
        then = f', then {", ".join(later)}' if later else ''
        print(f'error: {os.path.basename(exc.name)} failed in {_describe(first, failure)}'
              f"{then}; each rank's own message is above.", file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
