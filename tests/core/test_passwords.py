"""The password policy (NIST SP 800-63B) and hashing with normalisation."""

from __future__ import annotations

import unicodedata

import pytest
from pwdlib import PasswordHash

from kiln.core.auth.passwords import (
    COMMON_PASSWORDS_FILE,
    MAX_LENGTH,
    MIN_LENGTH,
    PasswordPolicyError,
    check_password_policy,
    common_passwords,
    hash_password,
    verify_and_rehash,
    verify_password,
)


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("ab1", "Password must be at least 8 characters long (this one has 3)"),
        ("x1" * 65, "Password must be at most 128 characters long (this one has 130)"),
        ("aaaaaaaaaa", "Password must not be one character repeated; use different characters"),
        ("         ", "Password must not be one character repeated; use different characters"),
        ("password", "Password is one of the most commonly used passwords, which attackers try first; choose another"),
        (
            "Qwertyuiop",
            "Password is one of the most commonly used passwords, which attackers try first; choose another",
        ),
        ("iloveyou1", "Password is one of the most commonly used passwords, which attackers try first; choose another"),
    ],
)
def test_refusals_say_exactly_what_to_change(password, message):
    with pytest.raises(PasswordPolicyError) as exc:
        check_password_policy(password)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    "password",
    [
        "onlyletterslong",  # no composition rules: letters only is fine
        "73902815",  # digits only, not a common one
        "abcd efgh",  # spaces are characters like any other
        "pässwörd ünïcode",
        "x" * (MIN_LENGTH - 1) + "y",
        "xy" * (MAX_LENGTH // 2),
        "Tr0ub4dor&3",
    ],
)
def test_accepted_without_composition_rules(password):
    assert check_password_policy(password) is None


def test_email_and_its_user_part_are_refused():
    message = "Password must not be your email address or the part before the @"
    for password in ("Alice.1984@Example.com", "alice.1984"):
        with pytest.raises(PasswordPolicyError) as exc:
            check_password_policy(password, email="alice.1984@example.com")
        assert str(exc.value) == message
    assert check_password_policy("alice.1984", email="bob@example.com") is None


def test_length_counts_code_points_after_nfkc():
    # Eight composed characters typed as sixteen (letter + combining accent): still eight.
    decomposed = unicodedata.normalize("NFD", "éàüöéàüö")
    assert len(decomposed) == 16
    check_password_policy(decomposed)
    with pytest.raises(PasswordPolicyError, match=r"\(this one has 7\)"):
        check_password_policy(unicodedata.normalize("NFD", "éàüöéàü"))


def test_shipped_list_is_bounded_and_ordered_by_use():
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    assert len(lines) > 8000 and lines[:3] == ["123456789", "password", "12345678"]
    assert all(MIN_LENGTH <= len(w) <= MAX_LENGTH for w in lines)
    assert "trustno1" in common_passwords() and "onlyletterslong" not in common_passwords()


def test_hash_is_of_the_normalised_form():
    composed, decomposed = "café-crème 1", unicodedata.normalize("NFD", "café-crème 1")
    assert composed != decomposed
    stored = hash_password(composed)
    assert verify_password(decomposed, stored) and verify_password(composed, stored)
    assert not verify_password("cafe-creme 1", stored)


def test_hash_made_before_normalisation_still_verifies_and_is_replaced():
    decomposed = unicodedata.normalize("NFD", "naïve résumé 7")
    legacy = PasswordHash.recommended().hash(decomposed)  # what the old code stored
    ok, fresh = verify_and_rehash(decomposed, legacy)
    assert ok and fresh is not None
    assert verify_password(unicodedata.normalize("NFC", "naïve résumé 7"), fresh)
    assert verify_and_rehash("wrong résumé 7", legacy) == (False, None)


def test_overlong_input_is_refused_without_hashing():
    assert verify_and_rehash("a" * 300, hash_password("a" * 20)) == (False, None)
