"""Stop a run before its first step when a loss term reads data the training set lacks."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from capdistill.models.distillers import deployed_model
from capdistill.registry import HOOKS
from capdistill.utils.requirements import (ModelConfigError, check_batch_keys,
                                           merge_requirements)


def _base_dataset(dataset):
    """The dataset under mmengine/torch wrappers (``.dataset``, first of ``.datasets``)."""
    for _ in range(8):
        if hasattr(dataset, 'datasets') and dataset.datasets:
            dataset = dataset.datasets[0]
        elif hasattr(dataset, 'dataset') and not hasattr(dataset, 'data_list'):
            dataset = dataset.dataset
        else:
            break
    return dataset


def check_tokenizers(model, dataset):
    """The trained captioner must read token ids with the tokenizer the dataset wrote them
    with; another vocabulary (even one with more tokens) would train on wrong words."""
    trained = deployed_model(model)
    ours, theirs = getattr(trained, 'tokenizer', None), getattr(dataset, 'tokenizer', None)
    if not (hasattr(ours, 'fingerprint') and hasattr(theirs, 'fingerprint')):
        return
    if ours.fingerprint() != theirs.fingerprint():
        raise ModelConfigError(
            f'the training dataset tokenizes captions with {type(theirs).__name__} '
            f'({len(theirs.tokens())} tokens) but the model reads them with '
            f'{type(ours).__name__} ({len(ours.tokens())} tokens): give '
            'train_dataloader.dataset.tokenizer the model\'s tokenizer config.')


def model_requirements(model):
    """Batch key -> who needs it: ``model.required_batch_keys()`` plus the
    ``required_batch_keys`` dicts its submodules (losses) declare."""
    need = {}
    own = getattr(model, 'required_batch_keys', None)
    if callable(own):
        need = merge_requirements(need, own())
    for name, module in model.named_modules():
        declared = getattr(type(module), 'required_batch_keys', None)
        if isinstance(declared, dict):
            need = merge_requirements(
                need, {k: f'{type(module).__name__} ({name or "model"})' for k in declared})
    return need


@HOOKS.register_module()
class DataRequirementsHook(Hook):
    """Before training, compare the batch keys the model's terms read with one packed
    training sample, so that a term whose data is missing (concepts, caption grades, any
    ``data.<key>``) stops the run naming the dataset option, instead of vanishing.

    Caption grades (``'grade'``): a :class:`CaptionDataset` gives every caption weight 1
    unless ``grade=`` is set, so the dataset's ``grade`` is checked, not the weights.
    """
    priority = 'VERY_HIGH'

    def before_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        from capdistill.datasets.caption_dataset import check_unlabeled_use
        check_unlabeled_use(model, _base_dataset(runner.train_dataloader.dataset))
        check_tokenizers(model, _base_dataset(runner.train_dataloader.dataset))
        required = model_requirements(model)
        if not required:
            return
        dataset = runner.train_dataloader.dataset
        sample = dataset[0]
        present = set(sample.get('inputs') or {}) | set(sample.get('data_samples') or {})
        base = _base_dataset(dataset)
        if hasattr(base, 'grade'):
            if base.grade:
                present.add('grade')
        elif 'weight' in present:  # another dataset class: trust the weights it gives
            present.add('grade')
        check_batch_keys(required, dict.fromkeys(present))
