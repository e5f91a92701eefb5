"""Credentials never reach a journal: secrets sections, secret-named keys and the environment's keys."""

from __future__ import annotations

from drdrill.chaos.runner import REDACTED, redact


def test_secrets_sections_secret_keys_and_known_credentials_are_redacted(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    journal = {
        "experiment": {"secrets": {"aws": {"aws_access_key_id": "AKIA-INLINE", "region": "us-east-1"}},
                       "configuration": {"aws_config": "mirror.yaml", "db_password": "hunter2hunter2"}},
        "run": [{"output": "signed with AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                 "status": "succeeded", "duration": 1.5, "deviated": False}],
    }
    clean = redact(journal)
    assert clean["experiment"]["secrets"] == {"aws": {"aws_access_key_id": REDACTED, "region": REDACTED}}
    assert clean["experiment"]["configuration"] == {"aws_config": "mirror.yaml", "db_password": REDACTED}
    assert clean["run"][0]["output"] == f"signed with {REDACTED} / {REDACTED}"
    assert clean["run"][0]["duration"] == 1.5 and clean["run"][0]["deviated"] is False
    assert "AKIA" not in str(clean) and "hunter2" not in str(clean)


def test_short_or_absent_credentials_do_not_blank_ordinary_text(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")  # too short to be a real key: not searched for
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    assert redact({"output": "a payment"}) == {"output": "a payment"}
