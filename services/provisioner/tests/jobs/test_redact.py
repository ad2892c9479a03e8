from letsbe_provisioner.jobs.redact import MASK, Redactor


def test_redactor_masks_every_known_value_also_url_encoded_and_the_longest_match_whole() -> None:
    r = Redactor(["s3cr3t-value-1", "s3cr3t-value-1-longer", "p@ss/word+xyz"])
    assert r("a s3cr3t-value-1-longer b s3cr3t-value-1 c") == f"a {MASK} b {MASK} c"
    assert r("url: https://u:p%40ss%2Fword%2Bxyz@host") == f"url: https://u:{MASK}@host"
    r.add("rt_token_added_later")
    assert r("token=rt_token_added_later") == f"token={MASK}"


def test_redactor_ignores_values_too_short_to_be_secrets() -> None:
    assert Redactor(["", "abc"])("abc def") == "abc def"
