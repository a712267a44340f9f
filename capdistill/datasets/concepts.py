"""Object (noun) and action (verb) concepts of captions, tagged offline.

Caption-style English is short and regular ("a man is slicing an onion"), so a
lexicon plus a handful of context rules tags it well without a statistical model
(none can be installed here: nltk's tagger data and spaCy's models need a download).
The lexicon is lemminflect's (shipped on PyPI); the rules are:

- closed-class words (determiners, prepositions, pronouns, conjunctions, forms of
  *be*, auxiliaries, numbers) are never concepts;
- a word the lexicon knows only as a noun (verb) is a noun (verb);
- for words that can be either: after *be* an ``-ing``/``-ed`` form is a verb; after a
  modal, *do* or *to* (with a following object) a base form is a verb; after a
  determiner, adjective, number or preposition it is a noun (or an adjective before
  another noun); ``-ing`` forms are verbs; right after a subject noun, a finite form
  is the clause's verb; right after a verb it is its object; after *and* it repeats the
  tag of the word before *and*.

Tagging is deterministic and depends only on the words. Accuracy on the hand-checked
set in ``tests/data/caption_pos.txt`` is reported in ``docs/datasets.md``.
"""
import functools

from .tokenizers import split_words

NOUN, VERB, OTHER = 'NOUN', 'VERB', 'OTHER'

_DET = frozenset('a an the this that these those some his her their its my your our '
                 'another each every any no both all several many few which what whose'
                 .split())
_PREP = frozenset('in on at with of to from into onto over under by for about through '
                  'across around behind near down up out off along inside outside '
                  'between towards toward against upon during without like beside '
                  'past above below beneath after before than via'.split())
_PRON = frozenset('he she it they we i you him them us me someone somebody something '
                  'everyone everybody everything anyone anything nobody nothing one '
                  'himself herself itself themselves myself yourself who whom there '
                  'here how why'.split())
_CONJ = frozenset('and or but while as then so because when where if though'.split())
_BE = frozenset('is are was were be been being am'.split())
_MODAL = frozenset('can could will would should may might must shall do does did'.split())
_HAVE = frozenset('has have had having'.split())
_NUM = frozenset('zero two three four five six seven eight nine ten eleven twelve '
                 'twenty hundred thousand dozen'.split())
_ADV = frozenset('very also just then together now again away back really quickly '
                 'slowly not too still only even around upwards downwards leftwards '
                 'rightwards forwards backwards sideways'.split())
# Caption words the general lexicon gets wrong for this register.
_FORCE = {'video': NOUN, 'clip': NOUN, 'cartoon': NOUN, 'people': NOUN, 'man': NOUN,
          'men': NOUN, 'woman': NOUN, 'women': NOUN, 'kids': NOUN, 'kid': NOUN,
          'guy': NOUN, 'lady': NOUN, 'person': NOUN, 'dog': NOUN, 'cat': NOUN,
          'ball': NOUN, 'water': NOUN, 'game': NOUN, 'front': NOUN, 'top': NOUN}
# adjectives the lexicon also lists as nouns or verbs; as adjectives they make the next
# word a noun ("a big ring", "a green cross")
_FORCE.update(dict.fromkeys('old young new little big small black white red blue green '
                            'yellow other'.split(), 'ADJ'))
_DIRECTIONS = frozenset(['left', 'right'])
_RELATIVE = frozenset(['that', 'which', 'who'])
_CLOSED = _DET | _PREP | _PRON | _CONJ | _BE | _MODAL | _NUM | _ADV


@functools.lru_cache(maxsize=None)
def _candidates(word):
    """Frozenset of coarse tags the lexicon allows for ``word``."""
    import lemminflect
    tags = set()
    for upos in lemminflect.getAllLemmas(word):
        if upos in ('NOUN', 'PROPN'):
            tags.add(NOUN)
        elif upos in ('VERB', 'AUX'):
            tags.add(VERB)
        elif upos == 'ADJ':
            tags.add('ADJ')
        else:
            tags.add(OTHER)
    if not tags:  # unknown word: guess from its ending
        if word.endswith('ing') and len(word) > 5:
            tags = {VERB, NOUN}
        elif word.endswith('ly'):
            tags = {OTHER}
        else:
            tags = {NOUN}
    return frozenset(tags)


def _is_ing_form(word):
    """``running`` (of *run*), not ``ring`` or ``thing``."""
    if not word.endswith('ing'):
        return False
    import lemminflect
    return lemminflect.getAllLemmas(word).get('VERB', (word, ))[0] != word


def _is_participle(word):
    return word.endswith(('ing', 'ed', 'en')) or word in ('done', 'made', 'held', 'cut',
                                                           'put', 'shot', 'hit', 'set')


def _is_finite(word):
    return word.endswith(('s', 'ed')) and not word.endswith('ss')


def tag_words(words):
    """Coarse tags (``'NOUN'``, ``'VERB'``, ``'OTHER'``) for lower-cased ``words``."""
    tags = []
    verb_in_clause = False
    n = len(words)
    for i, raw in enumerate(words):
        word = raw[:-2] if raw.endswith("'s") and raw not in ("it's", "he's", "she's",
                                                                "that's", "there's") else raw
        prev = words[i - 1] if i else None
        prev_tag = tags[-1] if tags else None
        nxt = words[i + 1] if i + 1 < n else None
        tag = _tag_one(word, raw, prev, prev_tag, nxt, tags, words, i, verb_in_clause)
        if word in _CONJ or word in ('who', 'that', 'which'):
            verb_in_clause = False
        if tag == VERB:
            verb_in_clause = True
        tags.append(tag)
    return [t if t in (NOUN, VERB) else OTHER for t in tags]


def _tag_one(word, raw, prev, prev_tag, nxt, tags, words, i, verb_in_clause):
    if raw != word:  # possessive: "the man's hat"
        return NOUN
    if word in _FORCE and _FORCE[word] is not None:
        return _FORCE[word]
    if word in _HAVE:  # "has cut", "has been": auxiliary; "has a dog": main verb
        return 'FUNC' if nxt and (_is_participle(nxt) or nxt in _BE) else VERB
    if word in _CLOSED:
        return ('DET' if word in _DET else 'PREP' if word in _PREP else
                'BE' if word in _BE else 'FUNC')
    if word.isdigit():
        return 'DET'
    cands = _candidates(word)
    has_n, has_v, has_a = NOUN in cands, VERB in cands, 'ADJ' in cands
    if not has_n and not has_v:
        return 'ADJ' if has_a else OTHER
    if has_n and not has_v and not has_a:
        return NOUN
    if has_v and not has_n and not has_a:
        return VERB
    nxt_c = _candidates(nxt) if nxt and nxt not in _CLOSED else frozenset()
    nominal_next = NOUN in nxt_c and nxt not in _FORCE or _FORCE.get(nxt) == NOUN
    # "a purple cross contracts (on the screen)": the next word is the clause's verb,
    # so this one is its subject noun, not an adjective before a noun
    after = words[i + 2] if i + 2 < len(words) else None
    verb_next = (nominal_next and VERB in nxt_c and _is_finite(nxt) and not verb_in_clause
                 and (after is None or after in _CLOSED or after in _DIRECTIONS))
    if word in _DIRECTIONS and prev_tag == VERB:  # "moves left", "turns right"
        return OTHER
    # "a square that goes up": a finite verb right after a relative pronoun
    if prev in _RELATIVE and has_v and _is_finite(word) and len(tags) > 1 \
            and tags[-2] == NOUN:
        return VERB
    # after "be": progressive / passive verb, else a predicate noun or adjective
    if prev in _BE or prev_tag == 'BE' or prev in ('being', 'been'):
        if has_v and _is_participle(word):
            return VERB
        return NOUN if has_n and not has_a else 'ADJ'
    if prev in _MODAL or (prev in _HAVE and prev_tag != VERB):
        if has_v:
            return VERB
    if prev == 'to' and has_v:
        # "how to make a cake" vs "goes to school"
        if nxt is None or nxt in _CONJ:
            return NOUN if has_n else VERB
        if nxt in _DET or nxt in _PRON or nxt in _PREP or nxt in ('up', 'out', 'down'):
            return VERB
        return NOUN if has_n else VERB
    if prev_tag in ('DET', 'ADJ', 'PREP') or prev in _NUM or prev_tag == NOUN and (
            prev and prev.endswith("'s")):
        if has_a and nominal_next and not (has_n and verb_next):
            return 'ADJ'
        if has_n:
            return NOUN
    if prev == 'and' or prev == 'or':
        before = next((t for t in reversed(tags[:-1]) if t in (NOUN, VERB)), None)
        if before == VERB and has_v:
            return VERB
        if before == NOUN and has_n:
            return NOUN
    if has_v and _is_ing_form(word):
        return VERB
    if prev_tag == NOUN and has_v and not verb_in_clause:
        if _is_finite(word) or not word.endswith('s'):
            return VERB
    if prev_tag == VERB and has_n:
        return NOUN
    if prev is None:
        if nxt in _BE or nxt in _MODAL or nxt in _HAVE:
            return NOUN if has_n else VERB
        if nxt in _DET and has_v:
            return VERB
    if has_n:
        return NOUN
    return VERB if has_v else 'ADJ'


def tag_caption(caption):
    """``(words, tags)`` of one caption (see :func:`tag_words`)."""
    words = split_words(caption)
    return words, tag_words(words)


def caption_concepts(caption):
    """``(nouns, verbs)``: the caption's object and action words, in order, distinct."""
    words, tags = tag_caption(caption)
    nouns = list(dict.fromkeys(w[:-2] if w.endswith("'s") else w
                               for w, t in zip(words, tags) if t == NOUN))
    verbs = list(dict.fromkeys(w for w, t in zip(words, tags) if t == VERB))
    return nouns, verbs


def read_tagged(path):
    """Hand-tagged sentences: ``[(words, tags)]`` from ``word/N word/V word`` lines."""
    out = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            words, tags = [], []
            for tok in line.split():
                w, _, t = tok.partition('/')
                words.append(w.lower())
                tags.append({'N': NOUN, 'V': VERB}.get(t, OTHER))
            out.append((words, tags))
    return out


def tagging_accuracy(tagged):
    """Token accuracy over {noun, verb, other} plus noun/verb precision and recall."""
    total = correct = 0
    stats = {t: [0, 0, 0] for t in (NOUN, VERB)}  # true positive, predicted, gold
    for words, gold in tagged:
        pred = tag_words(words)
        for p, g in zip(pred, gold):
            total += 1
            correct += p == g
            for t in (NOUN, VERB):
                stats[t][0] += p == g == t
                stats[t][1] += p == t
                stats[t][2] += g == t
    out = dict(accuracy=correct / max(total, 1), tokens=total, sentences=len(tagged))
    for t, (tp, npred, ngold) in stats.items():
        out[f'{t.lower()}_precision'] = tp / max(npred, 1)
        out[f'{t.lower()}_recall'] = tp / max(ngold, 1)
    return out
