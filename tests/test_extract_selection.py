"""The token-of-interest rule and the position rule on hand-made token sequences (no random model involved)."""

from __future__ import annotations

import pytest

from lmm_concepts.extraction.positions import sequence_position
from lmm_concepts.extraction.selection import check_producible, find_word, mentions, word_forms, word_pattern
from tests._extract_fixtures import byte_level_tokenizer, ids, metaspace_tokenizer


@pytest.fixture(scope="module")
def bpe():
    return byte_level_tokenizer()


def pat(word, plural=False):
    return word_pattern(word_forms(word, plural))


def test_captions_match_whole_words_case_insensitively():
    dog = pat("dog")
    assert mentions(["A Dog runs."], dog)
    assert mentions(["the dog's ball", "nothing"], dog)
    assert not mentions(["a hotdog stand", "dogged effort", "underdogs"], dog)
    assert not mentions(["two dogs"], dog)
    assert mentions(["two dogs"], pat("dog", plural=True))
    assert mentions(["Puppies!"], pat("puppy", plural=True))
    assert mentions(["boxes"], pat("box", plural=True))
    assert not mentions(["a boxer"], pat("box", plural=True))


def test_word_forms_reject_empty_or_several_words():
    with pytest.raises(ValueError, match="empty"):
        word_forms("  ")
    with pytest.raises(ValueError, match="one word"):
        word_forms("hot dog")


def test_leading_space_piece_is_the_first_sub_token(bpe):
    gen = ids(bpe, ["Ġa", "Ġdog", "Ġon", "Ġthe", "Ġgrass"])
    m = find_word(bpe, gen, pat("dog"))
    assert m.index == 1 and m.token_ids == (gen[1],) and m.text == "dog"
    m = find_word(bpe, ids(bpe, ["Dog", "Ġon", "Ġgrass"]), pat("dog"))  # first token, no leading space
    assert m.index == 0 and m.text == "Dog"


def test_substrings_never_match(bpe):
    assert find_word(bpe, ids(bpe, ["Ġa", "Ġhotdog"]), pat("dog")) is None
    assert find_word(bpe, ids(bpe, ["Ġa", "Ġhot", "dog"]), pat("dog")) is None  # "hotdog" split in two
    assert find_word(bpe, ids(bpe, ["Ġa", "Ġdogs"]), pat("dog")) is None
    assert find_word(bpe, ids(bpe, ["Ġa", "Ġdogs"]), pat("dog", plural=True)).index == 1


def test_multi_token_word_is_found_by_its_first_sub_token(bpe):
    gen = ids(bpe, ["Ġa", "Ġpup", "py", "Ġon", "Ġgrass"])
    m = find_word(bpe, gen, pat("puppy"))
    assert m.index == 1 and m.token_ids == (gen[1], gen[2])
    gen = ids(bpe, ["Ġa", "Ġhot", "dog"])
    assert find_word(bpe, gen, pat("hotdog")).token_ids == (gen[1], gen[2])


def test_whitespace_only_piece_never_matches(bpe):
    gen = ids(bpe, ["Ġa", "Ġ", "today", "Ġ", "dog"])  # " a today dog": "Ġ" pieces carry the spaces
    assert find_word(bpe, gen, pat("today")).index == 2
    assert find_word(bpe, gen, pat("dog")).index == 4
    ms = metaspace_tokenizer()
    gen = ids(ms, ["▁a", "▁", "today", "▁dog"])
    assert find_word(ms, gen, pat("today")).index == 2
    assert find_word(ms, gen, pat("dog")).index == 3
    assert find_word(ms, ids(ms, ["▁", "day"]), pat("day")).index == 1


def test_first_occurrence_and_nothing_after_end_of_text(bpe):
    gen = ids(bpe, ["Ġcat", "Ġdog", "Ġa", "Ġdog"])
    assert find_word(bpe, gen, pat("dog")).index == 1
    gen = ids(bpe, ["Ġcat", "<eos>", "Ġdog"])
    assert find_word(bpe, gen, pat("dog"), stop_ids=[bpe.eos_token_id]) is None


def test_a_word_the_tokenizer_cannot_produce_is_refused(bpe):
    check_producible(bpe, ["zebra"])  # byte-level: every word can be written
    ms = metaspace_tokenizer()
    check_producible(ms, ["dog"])
    with pytest.raises(ValueError, match="cannot produce 'zebra'"):
        check_producible(ms, ["zebra"])


@pytest.mark.parametrize(
    "index, prompt_length, pad, rule, expected",
    [(0, 7, 0, "predicts", 6), (0, 7, 0, "at", 7), (3, 7, 2, "predicts", 7), (3, 7, 2, "at", 8)],
)
def test_positions_count_visual_tokens_and_skip_left_padding(index, prompt_length, pad, rule, expected):
    assert sequence_position(index, prompt_length, pad, rule) == expected
