import logging
import subprocess
import sys

import pytest

from securechat.logs import UnsafeLogField, format_event, get_logger, log_event


def test_records_carry_only_allow_listed_fields(caplog: pytest.LogCaptureFixture) -> None:
    logger = get_logger("test")
    with caplog.at_level(logging.INFO, logger="securechat"):
        log_event(logger, "request_done", request_id="req-1", ttft_ms=1.5, output_tokens=3)
    assert caplog.messages == ["request_done output_tokens=3 request_id=req-1 ttft_ms=1.5"]


@pytest.mark.parametrize(
    "fields",
    [
        {"prompt": "x"},
        {"text": "hello"},
        {"request_id": "has spaces in it"},
        {"reason": "a\nb"},
        {"reason": "trailing\n"},
        {"bytes": b"x"},
    ],
)
def test_content_bearing_fields_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(UnsafeLogField):
        format_event("e", fields)


def test_refused_even_when_the_level_is_disabled() -> None:
    logger = get_logger("quiet")
    logger.setLevel(logging.CRITICAL)
    with pytest.raises(UnsafeLogField):
        log_event(logger, "e", prompt="secret")


def test_core_imports_without_ray() -> None:
    """The core package never imports ray: hide ray and import every module."""
    code = (
        "import sys, importlib, pkgutil\n"
        "sys.modules['ray'] = None\n"
        "import securechat\n"
        "for m in pkgutil.walk_packages(securechat.__path__, 'securechat.'):\n"
        "    importlib.import_module(m.name)\n"
        "assert 'ray' not in [k for k, v in sys.modules.items() if v is not None]\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
