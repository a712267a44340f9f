"""Preparing a config for the Runner: launcher, CPU distributed training, AMP."""
import os

import torch
import torch.distributed as dist


def setup_distributed(cfg, launcher):
    """Adjust ``cfg`` for ``launcher`` and start the process group where mmengine cannot.

    mmengine's pytorch launcher calls ``torch.cuda.set_device``, which fails without
    CUDA, so on CPU the gloo group is initialised here and DDP gets ``device_ids=None``.
    """
    cfg.launcher = launcher
    if launcher == 'none':
        return cfg
    if torch.cuda.is_available():
        cfg.env_cfg.setdefault('dist_cfg', {})['backend'] = 'nccl'
        return cfg
    cfg.env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None,
                                 broadcast_buffers=False, find_unused_parameters=False)
    if launcher == 'slurm':
        _slurm_env()
    if not dist.is_initialized():
        dist.init_process_group('gloo')
    return cfg


def finish_distributed():
    """End a distributed run: every rank waits for the others, then the group is closed.

    Left to interpreter exit, the process group is destroyed in no particular order
    with the rest of the interpreter, and a gloo rank can abort with "terminate called
    without an active exception" after training has finished. Call this after the
    runner (and so the DDP wrapper) has been freed.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _slurm_env():
    """torchrun-style variables from SLURM's, for the CPU path."""
    os.environ.setdefault('RANK', os.environ.get('SLURM_PROCID', '0'))
    os.environ.setdefault('WORLD_SIZE', os.environ.get('SLURM_NTASKS', '1'))
    os.environ.setdefault('LOCAL_RANK', os.environ.get('SLURM_LOCALID', '0'))
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        nodes = os.environ.get('SLURM_NODELIST', '127.0.0.1')
        os.environ['MASTER_ADDR'] = nodes.split(',')[0].split('[')[0]


def enable_amp(cfg):
    """Mixed precision: mmengine's AmpOptimWrapper on GPU, bfloat16 autocast on CPU."""
    if torch.cuda.is_available():
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    else:
        from . import amp  # noqa: F401  (registers CPUAutocastOptimWrapper)
        cfg.optim_wrapper.type = 'CPUAutocastOptimWrapper'
    return cfg


def read_config(path, options=None):
    """The config at ``path`` as a run would build it: ``options`` (``--cfg-options``
    as mmengine's ``DictAction`` parses them) checked and merged, custom modules
    imported, keys and values checked, datasets reading only the features the model
    reads. Bad input raises the one-line errors :func:`~capdistill.utils.cli.friendly_main`
    prints."""
    from mmengine.config import Config
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Config file not found: {path}')
    from .config_check import check_config, check_options
    from capdistill.registry import import_custom_modules
    cfg = Config.fromfile(path, import_custom_modules=False)
    if options:
        check_options(cfg, options)
        cfg.merge_from_dict(options)
    import_custom_modules(cfg)  # also those named by --cfg-options
    check_config(cfg, option_keys=options or ())
    from capdistill.datasets.caption_dataset import restrict_features
    return restrict_features(cfg)  # datasets load only the feature sets the model reads


def load_config(args):
    """:func:`read_config` of ``args.config`` with ``--cfg-options``, the CPU defaults
    resolved and a work dir set (tools/train.py, tools/test.py)."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = apply_cpu_defaults(read_config(args.config, args.cfg_options))
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or os.path.join(
        'work_dirs', os.path.splitext(os.path.basename(args.config))[0])
    return cfg


class _ProcessWording:
    """Log filter: mmengine's environment summary counts processes as "GPU number"; on a
    machine without CUDA they are CPU processes."""

    def filter(self, record):
        if isinstance(record.msg, str) and 'GPU number:' in record.msg:
            record.msg = record.msg.replace('GPU number:', 'Processes:')
        return True


#: the default hooks mmengine itself defines (a None entry is mmengine's to drop) ...
_MMENGINE_DEFAULT_HOOKS = ('runtime_info', 'timer', 'sampler_seed', 'logger', 'param_scheduler',
                           'checkpoint')
#: ... and capdistill's (configs/_base_/default_runtime.py), dropped here: mmengine would stop
#: on a bare assertion
_CAPDISTILL_DEFAULT_HOOKS = ('epoch_seed', 'finite_loss', 'data_requirements',
                             'checkpoint_match', 'mid_epoch_checkpoint')


def resumed_checkpoint(cfg):
    """The checkpoint a ``resume=True`` run continues from, as mmengine picks it:
    ``load_from``, else the latest one of the work dir; None when nothing is resumed."""
    if not cfg.get('resume'):
        return None
    if cfg.get('load_from'):
        return cfg.load_from
    from mmengine.runner import find_latest_checkpoint
    return find_latest_checkpoint(cfg.work_dir) if cfg.get('work_dir') else None


def skip_start_weights_on_resume(cfg):
    """A resumed run takes every weight from its checkpoint, so ``model.student_ckpt``
    (the weights a distillation or SCST run starts from) is not loaded: a start
    checkpoint moved or deleted since does not stop the resume. A ``resume`` that finds
    no checkpoint yet starts from ``student_ckpt`` as a new run does."""
    ckpt = resumed_checkpoint(cfg)
    model = cfg.get('model')
    if ckpt and isinstance(model, dict) and model.get('student_ckpt') is not None:
        from mmengine.logging import print_log
        print_log(f'resuming from {ckpt}: model.student_ckpt ({model["student_ckpt"]}) is '
                  'not loaded; the checkpoint holds the student.', logger='current')
        model['student_ckpt'] = None
    return cfg


def build_runner(cfg):
    """``Runner.from_cfg(cfg)``, with a log that says processes, not GPUs, on CPU,
    ``default_hooks=dict(<name>=None)`` switching off any default hook, and a resumed
    run not loading the start weights its checkpoint replaces."""
    from mmengine.runner import Runner
    skip_start_weights_on_resume(cfg)
    hooks = cfg.get('default_hooks') or {}
    for name in [n for n, h in hooks.items() if h is None and n not in _MMENGINE_DEFAULT_HOOKS]:
        if name not in _CAPDISTILL_DEFAULT_HOOKS:  # a misspelled name would switch nothing off
            from .config_check import _unknown
            raise _unknown('default_hooks', name,
                           _MMENGINE_DEFAULT_HOOKS + _CAPDISTILL_DEFAULT_HOOKS, 'default_hooks')
        hooks.pop(name)

    class CapdistillRunner(Runner):

        def build_logger(self, *args, **kwargs):
            logger = super().build_logger(*args, **kwargs)
            if not torch.cuda.is_available() and not any(
                    isinstance(f, _ProcessWording) for f in logger.filters):
                logger.addFilter(_ProcessWording())
            return logger

    return CapdistillRunner.from_cfg(cfg)


def available_cores():
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_cpu_threads(processes=1):
    """Torch threads for one of ``processes`` processes: half its share of the cores.

    ``OMP_NUM_THREADS`` wins when set. More threads than free cores makes every step
    wait on the slowest thread: on a busy 2-core machine a training step ran 6x slower
    with 2 threads than with 1, and captioning one video 40x slower.
    """
    env = os.environ.get('OMP_NUM_THREADS', '')
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, available_cores() // max(1, processes) // 2)


def apply_cpu_defaults(cfg):
    """Resolve ``cpu_threads='auto'`` and dataloader ``num_workers='auto'`` from the cores.

    Each training process gets :func:`default_cpu_threads` torch threads and up to 4
    data-loader workers from what is left. Integers in the config are used as given.
    """
    cores = available_cores()
    procs = int(os.environ.get('LOCAL_WORLD_SIZE', os.environ.get('WORLD_SIZE', '1')) or 1)
    share = max(1, cores // max(1, procs))
    threads = cfg.get('cpu_threads', 'auto')
    if threads == 'auto':
        threads = default_cpu_threads(procs)
    elif not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        from .config_check import ConfigError
        raise ConfigError(f"cpu_threads must be 'auto' or a positive integer, got {threads!r}")
    torch.set_num_threads(threads)
    cfg.cpu_threads = threads
    workers = min(4, max(0, share - threads - 1))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if isinstance(loader, dict) and loader.get('num_workers') == 'auto':
            loader['num_workers'] = workers
            if workers == 0:
                loader['persistent_workers'] = False  # DataLoader refuses it without workers
    return cfg
