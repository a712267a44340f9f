"""Caption scores through pycocoevalcap, computed faster with identical values.

:func:`score_captions` returns exactly what pycocoevalcap's ``PTBTokenizer``
followed by ``Bleu(4)``, ``Meteor``, ``Rouge`` and ``Cider`` return when called
one after another (the ``COCOEvalCap`` recipe), under pycocoevalcap's key
names: ``Bleu_1`` .. ``Bleu_4``, ``METEOR`` and ``ROUGE_L`` in [0, 1], and
``CIDEr`` (CIDEr-D as pycocoevalcap computes it: mean over n-grams x 10, so
typically 0 .. ~2 for captioning models; not multiplied by 100).

It is faster because of how the work is scheduled, not what is computed:

* references and predictions go through the Stanford PTB tokenizer in one JVM
  call instead of two (the tokenizer works line by line, so the tokens are the
  same);
* METEOR's JVM (about 10 s of CPU to start, it loads paraphrase tables) is
  started once per process and kept alive for later calls; its start overlaps
  tokenization, and its heap is sized up front (see ``METEOR_JAVA_OPTIONS``).
  :class:`~capdistill.evaluation.CaptionMetric` starts it when the first test
  batch arrives (:func:`prestart_meteor`), so it loads while the model decodes;
* repeated evaluations in one process (validation every epoch) reuse work: the
  PTB tokens of every sentence seen before and METEOR's statistics of every
  (prediction, references) pair seen before are kept (bounded, see
  ``CACHE_ENTRIES``); only new sentences go to the tokenizer and only new pairs
  to METEOR's ``SCORE``. Both are functions of their own line alone (the
  tokenizer works line by line, METEOR scores segment by segment and ``EVAL``
  receives the same statistics lines), so the scores are unchanged;
* METEOR's requests are streamed to the JVM from a writer thread instead of
  one round trip per video, and METEOR runs in a thread while BLEU, ROUGE-L and
  CIDEr run in Python: the JVM works outside the GIL;
* BLEU, ROUGE-L and CIDEr-D run through :mod:`.fast_scorers`, which find the
  same integers (n-gram matches, subsequence lengths) with less interpreter work
  and perform the same floating point operations in the same order as
  pycocoevalcap's scorers.

Inputs are sanitised before tokenisation: every line break (``\\n``, ``\\r``,
``\\u2028``, ...) becomes a space. pycocoevalcap replaces only ``\\n``; the
Java tokenizer also splits lines at the others, which would misalign every
later caption with its video.
"""
import atexit
import os
import re
import shutil
import subprocess
import tempfile
import threading

from .fast_scorers import FastBleu, FastCider, FastRouge, NgramTable

__all__ = [
    'score_captions', 'JavaNotFoundError', 'MeteorError', 'SpiceModelsMissingError',
    'DEFAULT_METRICS', 'shutdown_meteor', 'check_available', 'prestart_meteor',
    'clear_caches'
]

DEFAULT_METRICS = ('Bleu', 'METEOR', 'ROUGE_L', 'CIDEr')
_KNOWN = ('Bleu', 'METEOR', 'ROUGE_L', 'CIDEr', 'SPICE')
_ALIASES = {'bleu': 'Bleu', 'meteor': 'METEOR', 'rouge': 'ROUGE_L', 'rouge_l': 'ROUGE_L',
            'cider': 'CIDEr', 'spice': 'SPICE'}
_LINE_BREAKS = re.compile('[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]')
_PUNCTUATIONS = frozenset(["''", "'", '``', '`', '-LRB-', '-RRB-', '-LCB-', '-RCB-',
                           '.', '?', '!', ',', ':', '-', '--', '...', ';'])
# pycocoevalcap runs METEOR with -Xmx2G only. Sizing the heap up front and using
# the parallel collector makes loading METEOR's paraphrase table ~40% faster
# here (17 s -> 10 s for 2,990 videos x 20 references, start included); these
# options change memory management only, the scores are byte-identical.
METEOR_JAVA_OPTIONS = ('-Xmx2G', '-Xms2G', '-XX:+UseParallelGC')
# per-process caches of PTB tokens and METEOR statistics; each is emptied when it
# reaches this many entries (MSR-VTT's validation + test references are ~70,000)
CACHE_ENTRIES = 400_000
_SPICE_JARS = ('stanford-corenlp-3.6.0.jar', 'stanford-corenlp-3.6.0-models.jar')


class UnknownMetricError(ValueError):
    """A metric list naming no metric, or one this scorer does not compute."""


class JavaNotFoundError(RuntimeError):
    """No ``java`` on PATH; pycocoevalcap's tokenizer and METEOR need one."""


class MeteorError(RuntimeError):
    """The METEOR subprocess died or answered something unreadable."""


class SpiceModelsMissingError(RuntimeError):
    """SPICE was asked for but the Stanford CoreNLP 3.6.0 jars are absent."""


def _package_dir(sub):
    import pycocoevalcap
    return os.path.join(list(pycocoevalcap.__path__)[0], sub)


def _require_java(metrics):
    if shutil.which('java') is not None:
        return
    if 'METEOR' in metrics:
        raise JavaNotFoundError(
            'METEOR needs a Java runtime (java not found on PATH): install one '
            '(e.g. apt-get install default-jre-headless) or drop METEOR from the '
            "metric's `metrics` list (pycocoevalcap's PTB tokenizer still needs "
            'Java for the other metrics).')
    raise JavaNotFoundError(
        "pycocoevalcap's PTB tokenizer needs a Java runtime (java not found on "
        'PATH): install one (e.g. apt-get install default-jre-headless).')


def _check_spice():
    lib = os.path.join(_package_dir('spice'), 'lib')
    missing = [j for j in _SPICE_JARS if not os.path.isfile(os.path.join(lib, j))]
    if missing:
        raise SpiceModelsMissingError(
            f'SPICE needs the Stanford CoreNLP 3.6.0 models ({", ".join(missing)}) in '
            f'{lib}: copy them there from stanford-corenlp-full-2015-12-09.zip; '
            'capdistill will not download them; or drop SPICE from `metrics` '
            '(CaptionMetric: `scorers`).')


def check_available(metrics=DEFAULT_METRICS):
    """Fail now, not after a long test run, if ``metrics`` cannot be computed here.

    Raises:
        UnknownMetricError: an unknown metric name, or none.
        JavaNotFoundError: no ``java`` on PATH.
        SpiceModelsMissingError: SPICE asked for without its Stanford models.
    """
    metrics = _normalise_metrics(metrics)
    _require_java(metrics)
    if 'SPICE' in metrics:
        _check_spice()


def _normalise_metrics(metrics):
    out = []
    for name in metrics:
        canon = name if name in _KNOWN else _ALIASES.get(str(name).lower())
        if canon is None:
            raise UnknownMetricError(f'Unknown caption metric {name!r}; choose from '
                                     f'{", ".join(_KNOWN)}.')
        if canon not in out:
            out.append(canon)
    if not out:
        raise UnknownMetricError(f'The caption metric list is empty; name at least one of '
                                 f'{", ".join(_KNOWN)}.')
    return out


# ----------------------------------------------------------------------------
# Tokenisation (Stanford PTBTokenizer, as pycocoevalcap runs it)
# ----------------------------------------------------------------------------
def _sanitise(text):
    return _LINE_BREAKS.sub(' ', str(text))


def ptb_tokenize(sentences):
    """Tokenise sentences with pycocoevalcap's PTB tokenizer in one JVM call.

    Same jar, options and punctuation filter as ``PTBTokenizer.tokenize``; the
    input file goes to a private temporary directory instead of the package
    directory (which may be read-only).
    """
    jar_dir = _package_dir('tokenizer')
    with tempfile.TemporaryDirectory(prefix='capdistill_ptb_') as tmp:
        path = os.path.join(tmp, 'captions.txt')
        with open(path, 'wb') as f:
            f.write('\n'.join(_sanitise(s) for s in sentences).encode())
        cmd = ['java', '-cp', 'stanford-corenlp-3.4.1.jar',
               'edu.stanford.nlp.process.PTBTokenizer', '-preserveLines', '-lowerCase', path]
        proc = subprocess.run(cmd, cwd=jar_dir, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors='replace').strip().splitlines()[-1:]
        raise RuntimeError(f'PTB tokenizer failed (exit {proc.returncode}): {" ".join(tail)}')
    lines = proc.stdout.decode().split('\n')
    if len(lines) < len(sentences):
        raise RuntimeError(f'PTB tokenizer returned {len(lines)} lines for '
                           f'{len(sentences)} captions.')
    return [' '.join(w for w in line.rstrip().split(' ') if w not in _PUNCTUATIONS)
            for line in lines[:len(sentences)]]


_PTB_CACHE = {}


def _bounded(cache, extra):
    if len(cache) + extra > CACHE_ENTRIES:
        cache.clear()


def ptb_tokenize_cached(sentences):
    """:func:`ptb_tokenize` with the tokens of sentences seen before in this process
    reused; the JVM runs only for new sentences (not at all when there are none)."""
    keys = [_sanitise(s) for s in sentences]
    known = {k: _PTB_CACHE[k] for k in keys if k in _PTB_CACHE}
    new = list(dict.fromkeys(k for k in keys if k not in known))
    if new:
        fresh = dict(zip(new, ptb_tokenize(new)))
        known.update(fresh)
        _bounded(_PTB_CACHE, len(new))
        _PTB_CACHE.update(fresh)
    return [known[k] for k in keys]


def clear_caches():
    """Forget the cached PTB tokens and METEOR statistics (the JVM keeps running)."""
    _PTB_CACHE.clear()
    _METEOR.stats.clear()


# ----------------------------------------------------------------------------
# METEOR: one JVM per process, reused
# ----------------------------------------------------------------------------
class _MeteorServer:
    """A long-lived ``meteor-1.5.jar -stdio`` process speaking pycocoevalcap's protocol."""

    def __init__(self):
        self.lock = threading.Lock()
        self.proc = None
        self.pid = None
        self.stderr = None
        self.stats = {}  # SCORE line -> its statistics line

    def _alive(self):
        return (self.proc is not None and self.pid == os.getpid()
                and self.proc.poll() is None)

    def start(self):
        """Start the JVM unless a live one belongs to this process."""
        with self.lock:
            self._start_locked()

    def _start_locked(self):
        if self._alive():
            return
        self._close_locked()
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            ['java', *METEOR_JAVA_OPTIONS, '-jar', 'meteor-1.5.jar', '-', '-', '-stdio',
             '-l', 'en', '-norm'],
            cwd=_package_dir('meteor'), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.stderr)
        self.pid = os.getpid()

    def _close_locked(self):
        proc, self.proc = self.proc, None
        if proc is not None and self.pid == os.getpid():
            try:
                proc.stdin.close()
            except OSError:
                pass
            proc.kill()
            proc.wait()
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None

    def close(self):
        with self.lock:
            self._close_locked()

    def _died(self, what):
        self.proc.poll()
        tail = ''
        try:
            self.stderr.seek(0)
            lines = self.stderr.read().decode(errors='replace').strip().splitlines()
            tail = f': {lines[-1]}' if lines else ''
        except (OSError, ValueError):
            pass
        code = self.proc.returncode
        self._close_locked()
        return MeteorError(f'METEOR (java meteor-1.5.jar) {what} '
                           f'(exit code {code}){tail}')

    def _readline(self):
        line = self.proc.stdout.readline()
        if not line:
            raise self._died('stopped while scoring')
        return line.decode().strip()

    def compute_score(self, gts, res, ids):
        """pycocoevalcap ``Meteor.compute_score`` with the requests streamed; only
        segments not scored before in this process are sent as ``SCORE``."""
        lines = []
        for i in ids:
            hyp = res[i][0].replace('|||', '').replace('  ', ' ')
            refs = [r.replace('|||', '') for r in gts[i]]
            lines.append(' ||| '.join(('SCORE', ' ||| '.join(refs), hyp)))
        with self.lock:
            self._start_locked()
            proc = self.proc
            failed = []
            known = {line: self.stats[line] for line in lines if line in self.stats}
            new = list(dict.fromkeys(line for line in lines if line not in known))

            def write_all():
                try:
                    for line in new:
                        proc.stdin.write(f'{line}\n'.encode())
                    proc.stdin.flush()
                except (BrokenPipeError, OSError, ValueError) as exc:
                    failed.append(exc)

            writer = threading.Thread(target=write_all, daemon=True)
            writer.start()
            try:
                new_stats = [self._readline() for _ in new]
            finally:
                writer.join()
            if failed:
                raise self._died('refused input')
            fresh = dict(zip(new, new_stats))
            known.update(fresh)
            _bounded(self.stats, len(new))
            self.stats.update(fresh)
            stats = [known[line] for line in lines]
            try:
                proc.stdin.write(('EVAL ||| ' + ' ||| '.join(stats) + '\n').encode())
                proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                raise self._died('refused input') from exc
            try:
                scores = [float(self._readline()) for _ in ids]
                score = float(self._readline())
            except ValueError as exc:
                self._close_locked()
                raise MeteorError(f'METEOR answered something unreadable: {exc}') from exc
        return score, scores


_METEOR = _MeteorServer()
atexit.register(_METEOR.close)


def shutdown_meteor():
    """Stop this process's METEOR JVM (it restarts on the next call)."""
    _METEOR.close()


def prestart_meteor():
    """Start this process's METEOR JVM now, without waiting for it: it loads its
    paraphrase tables (~10 s of CPU) while the caller does other work. A no-op when
    it runs already or when Java is missing (scoring reports that)."""
    if shutil.which('java') is not None:
        _METEOR.start()


# ----------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------
def _check_inputs(predictions, references):
    missing = [v for v in predictions if v not in references]
    if missing:
        raise KeyError(f'{len(missing)} predicted video(s) have no references, e.g. '
                       f'{missing[:3]}')
    empty = [v for v in predictions if not list(references[v])]
    if empty:
        raise ValueError(f'{len(empty)} video(s) have an empty reference list, e.g. '
                         f'{empty[:3]}')
    bad = [v for v in predictions if not isinstance(references[v], (list, tuple))]
    if bad:
        raise TypeError(f'references must map video id -> list of str; {bad[0]!r} maps to '
                        f'{type(references[bad[0]]).__name__}')


def score_captions(predictions, references, metrics=DEFAULT_METRICS, per_video=False):
    """Score predicted captions against references with pycocoevalcap.

    Args:
        predictions (dict[str, str]): video id -> predicted caption (raw text;
            empty strings are allowed and score 0 on most metrics).
        references (dict[str, list[str]]): video id -> reference captions (raw
            text). Videos without a prediction are ignored.
        metrics (Sequence[str]): any of ``'Bleu'`` (gives ``Bleu_1``..``Bleu_4``),
            ``'METEOR'``, ``'ROUGE_L'``, ``'CIDEr'`` and ``'SPICE'`` (only where
            the Stanford CoreNLP 3.6.0 jars are installed in pycocoevalcap).
        per_video (bool): also return every video's scores.

    Returns:
        dict: ``{'Bleu_1': ..., 'METEOR': ..., 'ROUGE_L': ..., 'CIDEr': ...}``
        (Python floats, equal to what pycocoevalcap returns) or, with
        ``per_video=True``, ``{'aggregate': {...}, 'per_video': {vid: {...}}}``.

    Raises:
        JavaNotFoundError: no ``java`` on PATH.
        MeteorError: the METEOR JVM died.
        SpiceModelsMissingError: SPICE asked for without its models.
    """
    metrics = _normalise_metrics(metrics)
    _check_inputs(predictions, references)
    _require_java(metrics)
    if 'SPICE' in metrics:
        _check_spice()
    ids = list(predictions)
    if not ids:
        raise ValueError('No predictions to score.')
    if 'METEOR' in metrics:
        _METEOR.start()  # JVM start overlaps tokenisation

    sentences, owners = [], []
    for vid in ids:
        refs = list(references[vid])
        sentences.extend(refs)
        owners.append(len(refs))
    sentences.extend(predictions[v] for v in ids)
    tokens = ptb_tokenize_cached(sentences)
    gts, res, pos = {}, {}, 0
    for vid, count in zip(ids, owners):
        gts[vid] = tokens[pos:pos + count]
        pos += count
    for vid in ids:
        res[vid] = [tokens[pos]]
        pos += 1

    results, errors = {}, []
    meteor_thread = None
    if 'METEOR' in metrics:

        def run_meteor():
            try:
                results['METEOR'] = _METEOR.compute_score(gts, res, ids)
            except BaseException as exc:  # re-raised in the caller's thread
                errors.append(exc)

        meteor_thread = threading.Thread(target=run_meteor, name='capdistill-meteor',
                                         daemon=True)
        meteor_thread.start()
    try:
        table = NgramTable(gts, res, ids) if {'Bleu', 'CIDEr'} & set(metrics) else None
        if 'Bleu' in metrics:
            results['Bleu'] = FastBleu(4).compute_score(gts, res, ids, table)
        if 'ROUGE_L' in metrics:
            results['ROUGE_L'] = FastRouge().compute_score(gts, res, ids)
        if 'CIDEr' in metrics:
            results['CIDEr'] = FastCider().compute_score(gts, res, ids, table)
        if 'SPICE' in metrics:
            from pycocoevalcap.spice.spice import Spice
            score, video_scores = Spice().compute_score(gts, res)
            # Spice reports videos in sorted-id order
            by_id = dict(zip(sorted(ids), (s['All']['f'] for s in video_scores)))
            results['SPICE'] = (score, [by_id[v] for v in ids])
    finally:
        if meteor_thread is not None:
            meteor_thread.join()
    if errors:
        raise errors[0]

    aggregate, videos = {}, {vid: {} for vid in ids}
    for name in metrics:
        score, video_scores = results[name]
        if name == 'Bleu':
            for k in range(4):
                key = f'Bleu_{k + 1}'
                aggregate[key] = float(score[k])
                for vid, value in zip(ids, video_scores[k]):
                    videos[vid][key] = float(value)
        else:
            aggregate[name] = float(score)
            for vid, value in zip(ids, video_scores):
                videos[vid][name] = float(value)
    if per_video:
        return {'aggregate': aggregate, 'per_video': videos}
    return aggregate
