"""The prefix matcher finds exactly what a full leftmost-longest automaton finds, in a bounded memory."""

import json
import random
import subprocess
import sys

import ahocorasick_rs as ac

from letsbe_secrets_proxy.proxy.matcher import PREFIX, FormMatcher


def _full(forms: list[bytes]) -> ac.BytesAhoCorasick:
    return ac.BytesAhoCorasick(forms, matchkind=ac.MatchKind.LeftmostLongest)


def test_same_matches_as_a_full_leftmost_longest_automaton_on_tricky_text():
    rng = random.Random(7)
    alphabet = "ab"  # a tiny alphabet: prefixes collide and overlap everywhere
    forms = sorted({"".join(rng.choices(alphabet, k=rng.randint(6, 20))) for _ in range(300)})
    forms += ["abababab", "abababababab", "ab" * 5 + "x"]  # a form, its extension, a shared prefix
    raw = [f.encode() for f in forms]
    fast, full = FormMatcher(raw), _full(raw)
    for _ in range(200):
        text = "".join(rng.choices(alphabet + "x ", k=rng.randint(0, 400))).encode()
        assert fast.find_matches_as_indexes(text) == full.find_matches_as_indexes(text)


def test_a_form_hidden_behind_an_overlapping_prefix_is_found():
    secret = b"zzzzzzzz-real-secret"
    decoy = b"qzzzzzzz-not-a-form"  # a prefix of another form starts one byte earlier
    fast = FormMatcher([secret, b"qzzzzzzzz-other"])
    text = b"before q" + secret + b" after " + decoy
    assert fast.find_matches_as_indexes(text) == [(0, 8, 8 + len(secret))]
    assert len(secret) > PREFIX


def test_found_in_pieces_finds_a_form_across_every_piece_boundary():
    secret = b"zzzzzzzz-real-secret"
    fast = FormMatcher([secret, b"qzzzzzzzz-other"])
    for at in range(0, 40):
        text = b"x" * at + secret + b"y" * 30
        assert fast.found_in(text, piece=16), at
    assert not fast.found_in(b"x" * 100 + secret[:-1] + b"y" * 100, piece=16)
    assert not fast.found_in(b"", piece=16)


def test_memory_for_1000_secrets_stays_small():
    """1,000 secrets (~7,700 encoded forms), built in a fresh interpreter: the resident peak while the redactor
    is built (the registry rebuilds it whenever the store changes). With a full automaton it was 17.8 MB (7.5 MB
    kept); with the prefix matcher 8.6 MB (5.8 MB kept, of which about 2 MB is the automaton)."""
    script = """
import json, random, string
from letsbe_secrets_proxy.proxy.redact import Redactor
def kb(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))
rng = random.Random(1)
alphabet = string.ascii_letters + string.digits + "-_/+!@"
secrets = {f"s{i}": "".join(rng.choices(alphabet, k=rng.randint(12, 48))) for i in range(1000)}
before = kb("VmRSS")
r = Redactor(secrets)
assert r.redact("x " + secrets["s5"] + " y")[0] == "x SECRET_REF(s5) y"
print(json.dumps({"kept_kb": kb("VmRSS") - before, "peak_kb": kb("VmHWM") - before}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    used = json.loads(out.stdout)
    assert used["peak_kb"] < 12 * 1024, used
