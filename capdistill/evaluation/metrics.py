"""mmengine metric for caption quality (BLEU, METEOR, ROUGE-L, CIDEr)."""
import json
import os
import os.path as osp
import time
from typing import Optional, Sequence

from mmengine.dist import is_main_process
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from capdistill.registry import METRICS

from .caption_scorer import (DEFAULT_METRICS, _normalise_metrics, check_available,
                             prestart_meteor, score_captions)

__all__ = ['CaptionMetric']


def _field(sample, name, default=None):
    if isinstance(sample, dict):
        return sample.get(name, default)
    return getattr(sample, name, default)


@METRICS.register_module()
class CaptionMetric(BaseMetric):
    """Caption metrics through pycocoevalcap (see :func:`score_captions`).

    Each data sample handed to :meth:`process` is a dict (or data element)
    with ``video_id`` (str), ``pred_caption`` (str), ``refs`` (list[str]) and
    optionally ``teacher_caption``.

    Metric keys are pycocoevalcap's names without a prefix (``Bleu_1`` ..
    ``Bleu_4``, ``METEOR``, ``ROUGE_L``, ``CIDEr``), so a checkpoint hook can
    say ``save_best='CIDEr'``. Pass ``prefix='caption'`` to get
    ``caption/CIDEr`` instead (then ``save_best='caption/CIDEr'``).

    Under DDP mmengine's ``evaluate`` gathers every rank's results on rank 0
    and broadcasts the metrics; the scorer runs once, on rank 0. Samplers pad
    the last batch with repeated videos: repeated ``video_id`` s are dropped,
    keeping the first.

    Args:
        scorers (Sequence[str]): metric names passed to :func:`score_captions` (not
            ``metrics``: mmengine reads a ``metrics`` key as an Evaluator config).
        out_file (str, optional): write ``{"predictions": {vid: caption},
            "per_video": {vid: {metric: score}}, "aggregate": {...}}`` here
            (parent folders are created); ``teacher_captions`` is added when
            samples carry a ``teacher_caption``.
        collect_device (str): device for gathering results. Defaults to 'cpu'.
        prefix (str, optional): prefix of the metric keys; none by default.
        collect_dir (str, optional): folder for gathering through files.
    """
    default_prefix = ''  # plain pycocoevalcap keys (and no missing-prefix warning)

    def __init__(self,
                 scorers: Sequence[str] = DEFAULT_METRICS,
                 out_file: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix,
                         collect_dir=collect_dir)
        # fail when the run is built, not after the first epoch
        check_available(scorers)
        self.scorers = tuple(scorers)
        self.out_file = out_file
        self._meteor = 'METEOR' in _normalise_metrics(self.scorers)

    def process(self, data_batch, data_samples: Sequence) -> None:
        """Keep each sample's video id, prediction, references (and teacher caption).

        The first batch of an evaluation starts METEOR's JVM on the rank that scores,
        so its ~10 s start overlaps decoding instead of following it.
        """
        if self._meteor and not self.results and is_main_process():
            prestart_meteor()
        for sample in data_samples:
            video_id = _field(sample, 'video_id')
            refs = _field(sample, 'refs')
            if video_id is None or refs is None:
                raise KeyError('CaptionMetric needs `video_id` and `refs` in every data '
                               'sample (and `pred_caption`).')
            if isinstance(refs, str):
                refs = [refs]
            result = dict(video_id=str(video_id),
                          pred_caption=str(_field(sample, 'pred_caption', '') or ''),
                          refs=[str(r) for r in refs])
            teacher = _field(sample, 'teacher_caption')
            if teacher is not None:
                result['teacher_caption'] = str(teacher)
            self.results.append(result)

    def compute_metrics(self, results: list) -> dict:
        """Score the gathered results once; returns the aggregate scores."""
        unique = {}
        for result in results:
            unique.setdefault(result['video_id'], result)
        predictions = {vid: r['pred_caption'] for vid, r in unique.items()}
        references = {vid: r['refs'] for vid, r in unique.items()}
        # METEOR's JVM alone takes ~10 s: say what is running and how long it took
        names = ', '.join(self.scorers or DEFAULT_METRICS)
        print_log(f'Scoring {len(predictions)} videos ({names}) ...', logger='current')
        start = time.perf_counter()
        scores = score_captions(predictions, references, metrics=self.scorers,
                                per_video=True)
        print_log(f'Scored {len(predictions)} videos in {time.perf_counter() - start:.1f} s',
                  logger='current')
        if self.out_file:
            self._dump(unique, predictions, scores)
        return dict(scores['aggregate'])

    def _dump(self, unique, predictions, scores):
        out = {'predictions': predictions, 'per_video': scores['per_video'],
               'aggregate': scores['aggregate']}
        teachers = {vid: r['teacher_caption'] for vid, r in unique.items()
                    if 'teacher_caption' in r}
        if teachers:
            out['teacher_captions'] = teachers
        parent = osp.dirname(osp.abspath(self.out_file))
        os.makedirs(parent, exist_ok=True)
        with open(self.out_file, 'w', encoding='utf-8') as f:
            json.dump(out, f, indent=2, ensure_ascii=False)
        print_log(f'Caption predictions and scores written to {self.out_file}',
                  logger='current')
