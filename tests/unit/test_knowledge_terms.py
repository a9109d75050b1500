"""search_terms / index_text: the only words that ever reach FTS5 or tsquery."""

from __future__ import annotations

import pytest

from services.knowledge import STOP_WORDS, flat_clip, index_text, search_terms


def test_search_terms_split_camel_case():
    assert search_terms("KubePodCrashLooping") == ["kube", "pod", "crash", "looping"]


def test_search_terms_split_acronyms_and_keep_digits_with_their_word():
    assert search_terms("HTTPServerError") == ["http", "server", "error"]
    assert search_terms("k8sNodeNotReady") == ["k8s", "node", "not", "ready"]
    assert search_terms("Http5xxErrors on ipv6") == ["http5xx", "errors", "ipv6"]


def test_search_terms_split_on_punctuation():
    assert search_terms("node_exporter kube-state-metrics api.v2/health") == [
        "node", "exporter", "kube", "state", "metrics", "api", "v2", "health",
    ]


def test_search_terms_drop_stop_words_and_single_characters():
    assert search_terms("Why does the API pod of a node crash? x 7") == ["api", "pod", "node", "crash"]
    assert search_terms("what is this") == []
    assert {"the", "and", "or", "why", "was"} <= STOP_WORDS


def test_search_terms_deduplicate_keeping_order():
    assert search_terms("disk Disk DISK full disk FULL") == ["disk", "full"]
    assert search_terms("DiskFull disk-full") == ["disk", "full"]


def test_search_terms_limit():
    words = " ".join(f"word{i}" for i in range(30))
    assert search_terms(words) == [f"word{i}" for i in range(12)]
    assert search_terms(words, limit=3) == ["word0", "word1", "word2"]
    assert search_terms(words, limit=0) == []


def test_search_terms_keep_unicode_letters():
    assert search_terms("磁盘已满") == ["磁盘已满"]
    assert search_terms("Café Überlauf ПодУпал") == ["café", "überlauf", "под", "упал"]
    assert search_terms("データベース 接続エラー") == ["データベース", "接続エラー"]


def test_search_terms_split_latin_from_cjk():
    assert search_terms("api服务磁盘满了") == ["api", "服务磁盘满了"]


def test_search_terms_normalise_compatibility_forms():
    # full-width letters, ligatures and decomposed accents become the plain forms the index holds
    assert search_terms("ＤＩＳＫ ﬁle cafe\u0301") == ["disk", "file", "café"]


@pytest.mark.parametrize(
    "hostile",
    [
        'foo" OR 1=1 --',
        "NEAR(disk full, 5)",
        "disk* OR full*",
        "title:disk",
        "disk & full | !pod",
        "-disk +full ^x",
        "'; DROP TABLE knowledgeentry; --",
        '"unterminated',
        "a:* | b:* <-> c",
        "(((",
        "\\x00\x00\u200b\ufeff",
        "İSTANBUL ² ½ ⅻ",
    ],
)
def test_search_terms_reduce_query_syntax_to_plain_words(hostile: str):
    terms = search_terms(hostile)
    for term in terms:
        assert term.isalnum(), term
        assert term == term.lower()
        assert len(term) >= 2
        assert term not in STOP_WORDS


def test_search_terms_of_injection_looking_text():
    assert search_terms('foo" OR 1=1 --') == ["foo"]
    assert search_terms("NEAR(disk full)") == ["near", "disk", "full"]
    assert search_terms("* : & | ! -- ( ) ' \"") == []


def test_search_terms_cut_very_long_words():
    (term,) = search_terms("x" * 5000)
    assert 2 <= len(term) <= 64


def test_index_text_keeps_camel_case_whole_by_tails_and_in_pieces():
    text = index_text("KubePodCrashLooping on api", "body")
    assert text.split() == [
        "kubepodcrashlooping", "podcrashlooping", "crashlooping", "kube", "pod", "crash", "looping",
        "on", "api", "body",
    ]


def test_index_text_of_a_pathological_camel_word_stays_linear():
    text = index_text("Ab" * 2000)
    assert len(text) < 10_000
    assert text.split()[1:] == ["ab"] * 2000


def test_index_text_joins_all_parts_lower_case():
    text = index_text("Disk full", "Cleaned /var/log", "note", "DiskFull", "storage", "db-1")
    assert text == "disk full cleaned var log note diskfull disk full storage db 1"


def test_index_text_words_are_alphanumeric():
    text = index_text('foo" OR NEAR(x) * : & | ! 磁盘已满 İ')
    assert text
    assert all(word.isalnum() for word in text.split())
    assert "磁盘已满" in text.split()


def test_index_text_of_nothing():
    assert index_text() == ""
    assert index_text("", "  ", "--") == ""


def test_every_search_term_is_indexed_for_the_same_text():
    text = "KubePodCrashLooping on payments-api: Café 磁盘已满 HTTPServerError"
    assert set(search_terms(text)) <= set(index_text(text).split())


def test_flat_clip_on_a_word_boundary():
    assert flat_clip("short  text\n", 240) == "short text"
    clipped = flat_clip("word " * 100, 240)
    assert len(clipped) <= 240
    assert clipped.endswith("word…")
    cjk = flat_clip("磁" * 300, 240)
    assert len(cjk) == 240 and cjk.endswith("…")
