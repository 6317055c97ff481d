"""Hostile inputs, class 2 (issue 24): unbounded numbers.

Every numeric option of `check`, `demo` and `remediate` and every numeric suite.toml setting has one range in
auditq.limits.LIMITS, checked by the light stage (exit 2, one line, before torch). The generated tests try
every entry of the table with values outside it (below, above, huge, negative, NaN, ±inf, a bool) through the
command's own validation, and its two ends inside it; the named examples run through the installed CLI.
docs/options.md lists the same table.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import build_world, copy
from test_subprocess import clean_env

from auditq.errors import InputError
from auditq.limits import LIMITS, MAX_SEED, MAX_THREADS, check_context, check_number

#: the installed console script next to this interpreter (not a shim of another install on PATH)
AUDITQ = str(Path(sys.executable).parent / "auditq")

DOCS = Path(__file__).resolve().parents[2] / "docs" / "options.md"
#: LIMITS entries that are options of `auditq check` (CheckOptions fields) / `auditq remediate` (RemediateOptions)
CHECK_FIELDS = ("threads", "seed", "batch_size", "max_batch_tokens", "verify_cache", "prefix_tokens",
                "max_new_tokens", "answer_tokens", "mink_k", "seeds", "privleak_reference_auc", "served_timeout",
                "concurrency", "ray_timeout")
REMEDIATE_FIELDS = ("lr", "steps", "percentile", "check_every", "target", "privleak_target", "retain_weight",
                    "batch_size", "seed", "threads")
SUITE_FIELDS = ("prefix_tokens", "max_new_tokens", "answer_tokens")


def outside(name: str) -> list:
    """Values just outside LIMITS[name], far outside, and of the wrong kind."""
    limit = LIMITS[name]
    step = 1 if limit.kind is int else 1e-9 * max(1.0, abs(limit.high))
    values = [limit.high if limit.high_open else limit.high + step, 10**30, -(10**30), -1 if limit.low >= 0 else limit.low - 1, True]
    values.append(limit.low if limit.low_open else limit.low - step)
    if limit.kind is float:
        values += [math.nan, math.inf, -math.inf]
    else:
        values += [2**70, float(limit.low + 1)]  # a float is not an integer, however round
    return values


def inside(name: str) -> list:
    limit = LIMITS[name]
    low = limit.low + (1e-6 if limit.low_open else 0)
    high = limit.high - (1e-6 if limit.high_open else 0)
    return [limit.kind(low), limit.kind(high)]


# ---- the table itself ----------------------------------------------------------------------------------

def test_every_numeric_option_of_every_command_has_a_range():
    """A new numeric CLI option without a LIMITS entry fails here (typer's own `min=` misses NaN and inf)."""
    import inspect

    from auditq.cli.check import check
    from auditq.cli.demo import demo
    from auditq.cli.remediate import remediate

    for command in (check, demo, remediate):
        for name, parameter in inspect.signature(command).parameters.items():
            if parameter.annotation in ("int", "float", "Optional[int]", "Optional[float]", int, float):
                assert name in LIMITS, f"{command.__name__} --{name.replace('_', '-')} has no range in auditq.limits"


def test_docs_list_every_range_as_the_code_has_it():
    text = DOCS.read_text()
    for name, limit in LIMITS.items():
        row = re.search(rf"^\| `{name}` \| ([^|]+) \|", text, re.M)
        assert row, f"docs/options.md lacks the row for {name}"
        documented = row.group(1).strip()
        expected = limit.describe().replace(f" (= {MAX_THREADS} here)", "")
        assert documented == expected, (name, documented, expected)


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_every_range_refuses_what_lies_outside_it(name):
    for value in outside(name):
        with pytest.raises(InputError) as info:
            check_number(name, value)
        message = str(info.value)
        assert message.startswith(f"--{name.replace('_', '-')} = ") and "expected" in message and "\n" not in message
        assert len(message) < 200, message  # 2**70 or 10**30 are shortened, never pages of digits


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_every_range_accepts_both_ends(name):
    for value in inside(name):
        assert check_number(name, value) == value
    assert check_number(name, None) is None  # not given: the default applies


def test_named_bounds():
    assert LIMITS["seed"].low == 0 and LIMITS["seed"].high == MAX_SEED == 2**32 - 1
    import numpy as np

    np.random.seed(MAX_SEED)  # the top of the range is what numpy accepts...
    with pytest.raises(ValueError):
        np.random.seed(MAX_SEED + 1)  # ...and one above is not
    assert 1 <= MAX_THREADS <= 1024


# ---- through each command's own validation (generated over the table) ----------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("numbers"))


@pytest.mark.parametrize("name", CHECK_FIELDS)
def test_check_refuses_every_out_of_range_value_in_the_light_stage(world, name):
    from auditq.audit.request import CheckOptions
    from auditq.validate.inputs import validate_check

    for value in outside(name):
        options = CheckOptions(base=world["base"], unlearned=world["unlearned"], suite=world["suite"], formats=("fp",),
                               use_cache=False, **{name: value})
        with pytest.raises(InputError, match=rf"^--{name.replace('_', '-')} = "):
            validate_check(options, cwd=world["base"].parent)


@pytest.mark.parametrize("name", REMEDIATE_FIELDS)
def test_remediate_refuses_every_out_of_range_hyper_parameter_before_training(world, tmp_path, name):
    from auditq.remediate.command import RemediateOptions
    from auditq.remediate.validate import validate_inputs

    for value in outside(name):
        options = RemediateOptions(base=world["base"], suite=world["suite"], out=tmp_path / "r", **{name: value})
        with pytest.raises(InputError, match=rf"^--{name.replace('_', '-')} = "):
            validate_inputs(options)


#: LIMITS entries inside a --formats spec -> the spec with the number as {}
FORMAT_FIELDS = {"group_size": "rtn4:g{}", "prune_m": "prune:1:{}", "relearn_steps": "relearn:retain:steps={}",
                 "relearn_lora": "relearn:retain:lora={}", "relearn_batch": "relearn:retain:batch={}"}


def test_every_range_is_checked_somewhere():
    assert set(LIMITS) == set(CHECK_FIELDS) | set(REMEDIATE_FIELDS) | set(FORMAT_FIELDS)


@pytest.mark.parametrize("name", sorted(FORMAT_FIELDS))
def test_format_spec_numbers_refuse_out_of_range_values(name):
    from auditq.formats import parse_format

    limit = LIMITS[name]
    for value in (limit.high + 1, 10**30, 2**70):
        spec = FORMAT_FIELDS[name].format(value)
        with pytest.raises(InputError, match=rf"^--formats {re.escape(spec)}: .* = {value}: expected an integer in"):
            parse_format(spec, f"--formats {spec}")
    assert parse_format(FORMAT_FIELDS[name].format(limit.high), "--formats").spec  # the top end is accepted


@pytest.mark.parametrize("name", SUITE_FIELDS)
def test_suite_toml_settings_refuse_out_of_range_values(tmp_path, world, name):
    from auditq.suite.records import load_suite

    for value in (LIMITS[name].high + 1, 10**12, 2**70):
        suite = copy(world["suite"], tmp_path / f"suite-{value}")
        (suite / "suite.toml").write_text(f"[probes]\n{name} = {value}\n")
        with pytest.raises(InputError, match=rf"suite\.toml: \[probes\] {name} = {value}: expected an integer"):
            load_suite(suite)


# ---- the model's context ------------------------------------------------------------------------------

def test_context_budget_counts_prompt_plus_generation():
    check_context(12, 500, 511, 512, "max_position_embeddings")  # exactly full: accepted
    with pytest.raises(InputError, match=r"prefix_tokens 13 \+ max_new_tokens 500 = 513 tokens exceeds"):
        check_context(13, 500, 32, 512, "max_position_embeddings")
    with pytest.raises(InputError, match="answer_tokens 512 leaves no room"):
        check_context(4, 4, 512, 512, "max_position_embeddings")
    check_context(10**6, 10**6, 10**6, None, "unknown")  # no context known: the LIMITS cap alone applies


@pytest.mark.parametrize("flags, expected", [
    ({"max_new_tokens": 509}, "prefix_tokens 4 + max_new_tokens 509 = 513 tokens exceeds the model's context"),
    ({"prefix_tokens": 500, "max_new_tokens": 13}, "= 513 tokens exceeds"),
    ({"answer_tokens": 512}, "answer_tokens 512 leaves no room"),
])
def test_check_refuses_lengths_beyond_the_models_context(world, flags, expected):
    from auditq.audit.request import CheckOptions
    from auditq.validate.inputs import validate_check

    options = CheckOptions(base=world["base"], unlearned=world["unlearned"], suite=world["suite"], formats=("fp",),
                           probes=("knowmem",), use_cache=False, **flags)
    with pytest.raises(InputError, match=re.escape(expected)):
        validate_check(options, cwd=world["base"].parent)


def test_check_accepts_lengths_that_fill_the_context_exactly(world):
    from auditq.audit.request import CheckOptions
    from auditq.validate.inputs import validate_check

    options = CheckOptions(base=world["base"], unlearned=world["unlearned"], suite=world["suite"], formats=("fp",),
                           probes=("knowmem",), use_cache=False, max_new_tokens=508, answer_tokens=501)
    # 4 + 508 = 512 = the context; BOS + the 10-token qa_template + 501 answer tokens = 512 as well
    assert validate_check(options, cwd=world["base"].parent).suite is not None


def test_remediate_refuses_suite_lengths_beyond_the_models_context_before_training(world, tmp_path):
    from auditq.remediate.command import RemediateOptions
    from auditq.remediate.validate import validate_inputs

    suite = copy(world["suite"], tmp_path / "suite")
    (suite / "suite.toml").write_text("[probes]\nprefix_tokens = 4\nmax_new_tokens = 509\nanswer_tokens = 4\n")
    with pytest.raises(InputError, match=r"= 513 tokens exceeds .* lower the suite's \[probes\] prefix_tokens"):
        validate_inputs(RemediateOptions(base=world["base"], suite=suite, out=tmp_path / "r"))
    (suite / "suite.toml").write_text("[probes]\nprefix_tokens = 4\nmax_new_tokens = 508\nanswer_tokens = 4\n")
    validate_inputs(RemediateOptions(base=world["base"], suite=suite, out=tmp_path / "r"))  # exactly full: accepted


# ---- the named examples, through the installed CLI -----------------------------------------------------

NAMED = [
    (["check", "{base}", "{unlearned}", "--threads", "10000"], "--threads = 10000: expected an integer in 1.."),
    (["check", "{base}", "{unlearned}", "--seed", "-1"], "--seed = -1: expected an integer in 0..2**32-1"),
    (["check", "{base}", "{unlearned}", "--seed", str(2**70)], "--seed = 1180591620717411303424: expected"),
    (["check", "{base}", "{unlearned}", "--max-new-tokens", "600"], "exceeds the model's context"),
    (["check", "{base}", "{unlearned}", "--answer-tokens", "100000"], "answer_tokens 100000 leaves no room"),
    (["check", "{base}", "{unlearned}", "--mink-k", "nan"], "--mink-k = nan: expected a finite number in (0, 1]"),
    (["remediate", "{base}", "--out", "{tmp}/r", "--privleak-target", "inf"], "--privleak-target = inf: expected"),
    (["remediate", "{base}", "--out", "{tmp}/r", "--lr", "nan"], "--lr = nan: expected a finite number in (0, 1]"),
    (["remediate", "{base}", "--out", "{tmp}/r", "--retain-weight", "inf"], "--retain-weight = inf"),
    (["demo", "--seed", "-1"], "--seed = -1"),
    (["demo", "--threads", "10000"], "--threads = 10000"),
]


@pytest.mark.slow
@pytest.mark.parametrize("argv, expected", NAMED, ids=[" ".join(a[3:] if a[0] != "demo" else a) for a, _ in NAMED])
def test_installed_cli_refuses_out_of_range_numbers_with_one_line(world, tmp_path, argv, expected):
    args = [a.format(base=world["base"], unlearned=world["unlearned"], tmp=tmp_path) for a in argv]
    if args[0] in ("check", "remediate"):
        args += ["--suite", str(world["suite"])]
    started = time.monotonic()
    proc = subprocess.run([AUDITQ, *args], env=clean_env(tmp_path), capture_output=True, text=True, timeout=60)
    seconds = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr + proc.stdout[-500:]
    assert len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout and not (tmp_path / "r").exists()
    assert seconds < 15, seconds  # measured 1.1-2.0 s on the loaded 2-core machine (docs/hostile-inputs.md)
