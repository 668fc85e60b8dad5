"""The Telugu text corpus under data/text/ and the loaders that validate it (s2slib.data.text)."""

import json
import math
import re
from collections import Counter

import pytest

from s2slib.data.text import (
    EMOTIONS,
    QA_CATEGORIES,
    QA_COLUMNS,
    SENTENCE_CATEGORIES,
    SENTENCE_COLUMNS,
    Dialogue,
    QAPair,
    Sentence,
    is_telugu,
    load_dialogues,
    load_qa_pairs,
    load_sentences,
    text_dir,
)


@pytest.fixture(scope="module")
def sentences() -> list[Sentence]:
    return load_sentences()


@pytest.fixture(scope="module")
def qa_pairs() -> list[QAPair]:
    return load_qa_pairs()


@pytest.fixture(scope="module")
def dialogues() -> list[Dialogue]:
    return load_dialogues()


# ---------------------------------------------------------------------------------------------------------------
# The shipped corpus: size, coverage, script


def test_text_dir_is_the_repository_data_folder():
    path = text_dir()
    assert path.parts[-2:] == ("data", "text")
    assert (path / "sentences.tsv").is_file()


def test_sentences_are_many_and_distinct(sentences):
    texts = [s.text for s in sentences]
    assert len(set(texts)) >= 500
    assert len(set(texts)) == len(texts), "a sentence text appears twice"


def test_every_sentence_category_is_well_covered(sentences):
    counts = Counter(s.category for s in sentences)
    assert set(counts) == set(SENTENCE_CATEGORIES)
    assert min(counts.values()) >= 50, counts


def test_sentence_lengths_are_varied(sentences):
    n_words = [len(s.text.split()) for s in sentences]
    in_range = sum(4 <= n <= 15 for n in n_words)
    assert in_range / len(n_words) >= 0.8  # mostly 4 to 15 words
    assert any(n > 15 for n in n_words)  # a few long ones for the TTS to breathe through
    assert any(n <= 3 for n in n_words)  # and a few short ones


def test_qa_pairs_cover_every_category(qa_pairs):
    assert len(qa_pairs) >= 200
    counts = Counter(p.category for p in qa_pairs)
    assert set(counts) == set(QA_CATEGORIES)
    assert min(counts.values()) >= 20, counts
    questions = [p.question for p in qa_pairs]
    assert len(set(questions)) == len(questions), "a question appears twice"


def test_qa_pairs_use_every_emotion(qa_pairs):
    counts = Counter(p.emotion for p in qa_pairs)
    assert set(counts) == set(EMOTIONS)
    assert min(counts.values()) >= 5, counts


def test_dialogues_have_3_to_10_alternating_turns(dialogues):
    assert len(dialogues) >= 30
    for d in dialogues:
        assert 3 <= len(d.turns) <= 10, d.id
        assert [t.role for t in d.turns] == [("user", "agent")[i % 2] for i in range(len(d.turns))], d.id
        assert all(t.emotion in EMOTIONS for t in d.turns if t.role == "agent"), d.id
    lengths = Counter(len(d.turns) for d in dialogues)
    assert any(n <= 4 for n in lengths) and any(n >= 8 for n in lengths), lengths


def test_dialogues_have_follow_ups_that_need_memory(dialogues):
    with_memory = [d for d in dialogues if any(t.depends_on is not None for t in d.turns)]
    assert len(with_memory) >= 10
    for d in with_memory:
        for i, t in enumerate(d.turns):
            if t.depends_on is not None:
                assert t.role == "agent", f"{d.id} turn {i}: only the agent's answer depends on earlier turns"
                assert 0 <= t.depends_on < i - 1, f"{d.id} turn {i}: depends_on should reach back past the question"


def test_dialogue_agents_use_every_emotion(dialogues):
    used = {t.emotion for d in dialogues for t in d.turns if t.role == "agent"}
    assert used == set(EMOTIONS)


def test_all_text_is_telugu_script(sentences, qa_pairs, dialogues):
    texts = [s.text for s in sentences]
    texts += [p.question for p in qa_pairs] + [p.answer for p in qa_pairs]
    texts += [t.text for d in dialogues for t in d.turns]
    not_telugu = [t for t in texts if not is_telugu(t, min_fraction=0.8)]
    assert not_telugu == []
    glosses = [s.english for s in sentences] + [p.answer_english for p in qa_pairs]
    assert not any(is_telugu(g) for g in glosses), "an English gloss is written in Telugu"


# ---------------------------------------------------------------------------------------------------------------
# Arithmetic answers are correct. Telugu number words up to 100; "నూట" is "one hundred" in compounds (నూట నలభై =
# 140). A number word may carry a case suffix (ఆరును, ఏడుతో), so tokens are matched on their longest number prefix.

UNITS = {
    "సున్నా": 0, "ఒకటి": 1, "రెండు": 2, "మూడు": 3, "నాలుగు": 4, "ఐదు": 5, "ఆరు": 6, "ఏడు": 7, "ఎనిమిది": 8,
    "తొమ్మిది": 9,
}
TEENS = {
    "పది": 10, "పదకొండు": 11, "పన్నెండు": 12, "పదమూడు": 13, "పద్నాలుగు": 14, "పదిహేను": 15, "పదహారు": 16,
    "పదిహేడు": 17, "పద్దెనిమిది": 18,
}
TENS = {"ఇరవై": 20, "ముప్పై": 30, "నలభై": 40, "యాభై": 50, "అరవై": 60, "డెబ్బై": 70, "ఎనభై": 80, "తొంభై": 90}
NUMBER_WORDS = {**UNITS, **TEENS, **TENS, "వంద": 100}
OPERATIONS = {"కలిపితే": "add", "తీసేస్తే": "sub", "గుణిస్తే": "mul", "భాగిస్తే": "div"}


def _number_value(token: str) -> int | None:
    matches = [w for w in NUMBER_WORDS if token.startswith(w)]
    return NUMBER_WORDS[max(matches, key=len)] if matches else None


def parse_telugu_numbers(text: str) -> list[int]:
    """Every number written in words in ``text``, in order: "ఇరవై నాలుగును ఆరుతో" -> [24, 6]."""
    tokens = re.findall(r"[\u0C00-\u0C7F]+", text)
    numbers: list[int] = []
    i = 0
    while i < len(tokens):
        hundred = 100 if tokens[i] == "నూట" else 0
        i += bool(hundred)
        value = _number_value(tokens[i]) if i < len(tokens) else None
        if value is None:
            if hundred:
                numbers.append(hundred)
            i += 1
            continue
        i += 1
        if value in TENS.values() and i < len(tokens):  # ఇరవై నాలుగు = 20 + 4
            unit = _number_value(tokens[i])
            if unit is not None and 1 <= unit <= 9:
                value += unit
                i += 1
        numbers.append(hundred + value)
    return numbers


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ఏడు మరియు ఎనిమిది కలిపితే పదిహేను.", [7, 8, 15]),
        ("ఇరవై నాలుగును ఆరుతో భాగిస్తే నాలుగు వస్తుంది.", [24, 6, 4]),
        ("తొంభై తొమ్మిది మరియు ఒకటి", [99, 1]),
        ("పన్నెండును పన్నెండుతో గుణిస్తే నూట నలభై నాలుగు.", [12, 12, 144]),
        ("మూడు, నాలుగు, ఐదు", [3, 4, 5]),
        ("పదిని సున్నాతో", [10, 0]),
    ],
)
def test_parse_telugu_numbers(text, expected):
    assert parse_telugu_numbers(text) == expected


def test_arithmetic_answers_are_correct(qa_pairs):
    checked = 0
    for p in qa_pairs:
        ops = [op for word, op in OPERATIONS.items() if word in p.question]
        if p.category != "numbers_arithmetic" or len(ops) != 1:
            continue
        operands = parse_telugu_numbers(p.question)
        op = ops[0]
        if op == "div" and operands[1] == 0:
            assert "సాధ్యం కాదు" in p.answer, f"{p.id}: division by zero should be refused"
            checked += 1
            continue
        if op == "add":
            expected = sum(operands)
        else:
            assert len(operands) == 2, f"{p.id}: expected two operands in {p.question!r}, parsed {operands}"
            a, b = operands
            expected = {"sub": a - b, "mul": a * b, "div": a / b}[op]
        answered = parse_telugu_numbers(p.answer)
        assert answered, f"{p.id}: no number in the answer {p.answer!r}"
        assert math.isclose(answered[-1], expected), f"{p.id}: {p.question!r} answered {answered[-1]}, not {expected}"
        checked += 1
    assert checked >= 15, "the arithmetic check matched too few pairs to mean anything"


# ---------------------------------------------------------------------------------------------------------------
# is_telugu


@pytest.mark.parametrize(
    "text, expected",
    [
        ("నమస్కారం, మీరు ఎలా ఉన్నారు?", True),
        ("రైల్వే స్టేషన్‌కు ఎలా వెళ్ళాలి?", True),  # zero-width non-joiner is not a letter
        ("సైబర్ క్రైమ్ హెల్ప్‌లైన్ 1930కి ఫోన్ చేయండి", True),  # digits do not count against it
        ("Hello, how are you?", False),
        ("నా OTP number is 4729, please call back", False),
        ("12345 !?", False),
        ("", False),
    ],
)
def test_is_telugu(text, expected):
    assert is_telugu(text) is expected


def test_is_telugu_threshold():
    mixed = "నా ఫోన్ OTP"  # 6 Telugu letters and marks, 3 Latin letters
    assert is_telugu(mixed, min_fraction=0.6)
    assert not is_telugu(mixed, min_fraction=0.9)


# ---------------------------------------------------------------------------------------------------------------
# Validators reject bad files with a message that names the line

SENTENCE_HEADER = "\t".join(SENTENCE_COLUMNS)
QA_HEADER = "\t".join(QA_COLUMNS)
GOOD_SENTENCE = "sent_0001\tgreeting\tనమస్కారం, మీరు ఎలా ఉన్నారు?\tHello, how are you?"
GOOD_QA = "qa_0001\tgreetings\tఎలా ఉన్నావు?\tనేను బాగున్నాను.\thappy\tHow are you?\tI am fine."


def _write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_well_formed_small_files_load(tmp_path):
    assert len(load_sentences(_write(tmp_path, "s.tsv", [SENTENCE_HEADER, GOOD_SENTENCE, ""]))) == 1
    pairs = load_qa_pairs(str(_write(tmp_path, "q.tsv", [QA_HEADER, GOOD_QA])))
    assert pairs[0].emotion == "happy" and pairs[0].answer == "నేను బాగున్నాను."


@pytest.mark.parametrize(
    "lines, fragment",
    [
        ([SENTENCE_HEADER, GOOD_SENTENCE, "sent_0002\tgreeting\tశుభోదయం"], r"line 3: 3 tab-separated columns"),
        ([SENTENCE_HEADER, "sent_0001\tgreeting\t  \tHello"], r"line 2: column 'text' is empty"),
        ([SENTENCE_HEADER, "sent_0001\tgreeting\tGood morning to you\tHello"], r"line 2: text .* not Telugu"),
        ([SENTENCE_HEADER, GOOD_SENTENCE, GOOD_SENTENCE.replace("ఎలా", "అసలు")], r"line 3: duplicate id 'sent_0001'"),
        (["id,category,text,english", GOOD_SENTENCE], r"line 1: header"),
    ],
    ids=["wrong-columns", "empty-text", "english-text", "duplicate-id", "bad-header"],
)
def test_load_sentences_rejects(tmp_path, lines, fragment):
    path = _write(tmp_path, "sentences.tsv", lines)
    with pytest.raises(ValueError, match=fragment) as info:
        load_sentences(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "bad_line, fragment",
    [
        (GOOD_QA.replace("happy", "joyful").replace("qa_0001", "qa_0002"), r"line 3: unknown emotion 'joyful'"),
        (GOOD_QA.replace("qa_0001", "qa_0002").replace("నేను బాగున్నాను.", "I am fine."), r"line 3: answer .*Telugu"),
        (GOOD_QA, r"line 3: duplicate id 'qa_0001' \(first used on line 2\)"),
        ("qa_0002\tgreetings\tఎలా ఉన్నావు?\tనేను బాగున్నాను.\thappy", r"line 3: 5 tab-separated columns"),
    ],
    ids=["unknown-emotion", "english-answer", "duplicate-id", "wrong-columns"],
)
def test_load_qa_pairs_rejects(tmp_path, bad_line, fragment):
    path = _write(tmp_path, "qa_pairs.tsv", [QA_HEADER, GOOD_QA, bad_line])
    with pytest.raises(ValueError, match=fragment):
        load_qa_pairs(path)


def _user(text="నా పేరు రవి."):
    return {"role": "user", "text": text, "english": "My name is Ravi."}


def _agent(text="నమస్కారం రవి గారూ!", emotion="happy", **extra):
    return {"role": "agent", "text": text, "english": "Hello Ravi!", "emotion": emotion, **extra}


def _dialogue(id_, turns):
    return json.dumps({"id": id_, "topic": "names", "turns": turns}, ensure_ascii=False)


GOOD_DIALOGUE = _dialogue(
    "dlg_001", [_user(), _agent(), _user("నా పేరు ఏమిటి?"), _agent("మీ పేరు రవి.", "neutral", depends_on=0)]
)


def test_well_formed_dialogue_loads(tmp_path):
    (d,) = load_dialogues(_write(tmp_path, "d.jsonl", [GOOD_DIALOGUE]))
    assert d.id == "dlg_001" and len(d.turns) == 4
    assert d.turns[3].depends_on == 0 and d.turns[3].emotion == "neutral"
    assert d.turns[0].emotion is None and d.turns[0].depends_on is None


@pytest.mark.parametrize(
    "turns, fragment",
    [
        ([_user(), _agent(depends_on=3)], r"line 2: turn 1: depends_on=3 must be the index of an earlier turn"),
        ([_user(), _agent(depends_on=1)], r"line 2: turn 1: depends_on=1"),  # itself
        ([_user(), _agent(depends_on=-1)], r"line 2: turn 1: depends_on=-1"),
        ([_user(), _agent(depends_on=True)], r"line 2: turn 1: depends_on=True"),
        ([_agent(), _user()], r"line 2: turn 0 has role 'agent', expected 'user'"),
        ([_user(), _user()], r"line 2: turn 1 has role 'user', expected 'agent'"),
        ([_user(), _agent(emotion="joyful")], r"line 2: turn 1: unknown emotion 'joyful'"),
        ([_user(), _agent(emotion=None)], r"line 2: turn 1: agent turns need an 'emotion'"),
        ([_user("What is my name?"), _agent()], r"line 2: turn 0 text .*not Telugu"),
        ([], r"line 2: 'turns' must be a non-empty list"),
    ],
    ids=[
        "depends-forward", "depends-self", "depends-negative", "depends-bool", "starts-with-agent",
        "not-alternating", "unknown-emotion", "missing-emotion", "english-text", "no-turns",
    ],
)
def test_load_dialogues_rejects(tmp_path, turns, fragment):
    path = _write(tmp_path, "dialogues.jsonl", [GOOD_DIALOGUE, _dialogue("dlg_002", turns)])
    with pytest.raises(ValueError, match=fragment) as info:
        load_dialogues(path)
    assert str(path) in str(info.value)


def test_load_dialogues_rejects_bad_json_and_duplicate_ids(tmp_path):
    with pytest.raises(ValueError, match=r"line 2: not valid JSON"):
        load_dialogues(_write(tmp_path, "a.jsonl", [GOOD_DIALOGUE, '{"id": "dlg_002", "turns": [']))
    with pytest.raises(ValueError, match=r"line 3: duplicate id 'dlg_001' \(first used on line 1\)"):
        load_dialogues(_write(tmp_path, "b.jsonl", [GOOD_DIALOGUE, "", GOOD_DIALOGUE]))


def test_missing_file_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such.tsv"):
        load_sentences(tmp_path / "no_such.tsv")
