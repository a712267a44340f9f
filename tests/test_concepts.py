"""The caption concept tagger, measured on the hand-checked set in tests/data."""
import os

from capdistill.datasets.concepts import (caption_concepts, read_tagged, tag_words,
                                          tagging_accuracy)

DATA = os.path.join(os.path.dirname(__file__), 'data', 'caption_pos.txt')


def test_hand_checked_set_accuracy_floor():
    tagged = read_tagged(DATA)
    assert len(tagged) >= 100
    acc = tagging_accuracy(tagged)
    # measured 0.993 token accuracy, noun P/R 0.993/0.986, verb P/R 0.978/0.985
    assert acc['accuracy'] >= 0.97
    assert acc['noun_recall'] >= 0.96 and acc['verb_recall'] >= 0.95
    assert acc['noun_precision'] >= 0.96 and acc['verb_precision'] >= 0.95


def test_concepts_and_context_rules():
    assert caption_concepts('A man is slicing an onion.') == (['man', 'onion'], ['slicing'])
    assert caption_concepts('the man cooks food and a woman watches') == (
        ['man', 'food', 'woman'], ['cooks', 'watches'])
    # "plays" after a subject noun is a verb, after a determiner a noun
    assert tag_words('a girl plays'.split())[2] == 'VERB'
    assert tag_words('the plays'.split())[1] == 'NOUN'
    assert caption_concepts('') == ([], [])


def test_deterministic():
    words = 'a dog is running after the ball'.split()
    assert tag_words(words) == tag_words(list(words))
