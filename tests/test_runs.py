"""Run and model ids, and the one-line error a failed run records."""
import datetime as dt
import re

from pipeline.runs import error_line, new_id


def test_ids_carry_the_day_the_time_and_a_random_tail():
    with_day = new_id("build-samples", dt.date(2026, 10, 4))
    assert re.fullmatch(r"build-samples-20261004-\d{8}T\d{6}-[0-9a-f]{6}", with_day)
    assert re.fullmatch(r"import-aliccp-\d{8}T\d{6}-[0-9a-f]{6}", new_id("import-aliccp"))
    assert len({new_id("esmm", dt.date(2026, 10, 4)) for _ in range(50)}) == 50


def test_a_failed_run_records_the_first_line_of_its_error():
    assert error_line(ValueError("bad date\nTraceback ...")) == "bad date"
    assert error_line(RuntimeError("  ")) == "RuntimeError"
    assert len(error_line(ValueError("x" * 5000))) == 1000
