"""How long the installed `auditq` takes to refuse the hostile inputs of issue 24 classes 3, 5 and 7 (deep
nesting, accepted-when-it-should-be-refused, weak cache keys): the numbers in README's reliability section and
docs/hostile-inputs.md.

Builds the tiny checkpoint pair and suite of tests/validate/helpers.py, breaks copies, and times the console
script next to this interpreter in a subprocess with a clean environment (wall clock, interpreter start
included; best and median of REPEATS runs). Every case must exit 2 with one line. Usage:

    python bench/bench_hostile.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "validate"))


def _deep_json(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def _cases(tmp: Path, world: dict[str, Path]) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (argv after `auditq`, extra environment)."""
    from helpers import copy

    base, unl, suite = str(world["base"]), str(world["unlearned"]), str(world["suite"])
    check = ["check", base, unl, "--suite", suite, "-f", "fp", "--out", str(tmp / "out")]

    def broken_suite(name: str, edit) -> str:
        path = copy(world["suite"], tmp / name)
        edit(path)
        return str(path)

    def broken_unlearned(name: str, edit) -> str:
        path = copy(world["unlearned"], tmp / name)
        edit(path)
        return str(path)

    deep_config = broken_unlearned("deep-config", lambda p: (p / "config.json").write_text(
        json.dumps(json.loads((p / "config.json").read_text()))[:-1] + ', "d": ' + _deep_json(50_000) + "}"))
    deep_side = broken_unlearned("deep-side", lambda p: (p / "generation_config.json").write_text(
        '{"d": ' + _deep_json(50_000) + "}"))
    deep_toml = broken_suite("deep-toml", lambda p: (p / "suite.toml").write_text("d = " + _deep_json(20_000) + "\n"))
    deep_jsonl = broken_suite("deep-jsonl", lambda p: (p / "forget.jsonl").open("a").write(
        '{"id": "d", "text": "x", "n": ' + _deep_json(30_000) + "}\n"))
    (tmp / "deep.toml").write_text("d = " + _deep_json(20_000) + "\n")
    (tmp / "report.json").write_text('{"schema_version": "1.3", "formats": ' + _deep_json(100_000) + "}")
    mia_qa = broken_suite("mia-qa", lambda p: (p / "suite.toml").write_text(
        (p / "suite.toml").read_text() + 'mia_qa = "false"\n'))
    template = json.dumps("Context: " + "lorem ipsum dolor sit amet " * 400 + "Question: {question}\nAnswer:")
    long_template = broken_suite("template", lambda p: (p / "suite.toml").write_text(
        (p / "suite.toml").read_text() + f"qa_template = {template}\n"))
    same_split = broken_suite("same-split", lambda p: (p / "holdout.jsonl").write_bytes((p / "forget.jsonl").read_bytes()))
    cache = tmp / "cache"
    (cache / "results").mkdir(parents=True)
    keys = {"newline": "\n", "15 bytes": "ab" * 15}
    for name, text in keys.items():
        (tmp / f"{name}.key").write_text(text)
    (tmp / "dir.key").mkdir()
    swap = lambda i, v: [*check[:i], v, *check[i + 1:]]  # noqa: E731 - one argument replaced
    return {
        "3: deep config.json": (swap(2, deep_config), {}),
        "3: deep generation_config.json": (swap(2, deep_side), {}),
        "3: deep suite.toml": (swap(4, deep_toml), {}),
        "3: deep jsonl record": (swap(4, deep_jsonl), {}),
        "3: deep --config": ([*check, "--config", str(tmp / "deep.toml")], {}),
        "3: deep --waivers": ([*check, "--waivers", str(tmp / "deep.toml")], {}),
        "3: deep `auditq report` input": (["report", str(tmp / "report.json")], {}),
        "5: mia_qa = \"false\"": (swap(4, mia_qa), {}),
        "5: qa_template beyond the context": (swap(4, long_template), {}),
        "5: --out = the cache, --force": ([*check[:-1], str(cache), "--force"], {}),
        "5: --out containing the cache": ([*check[:-1], str(tmp), "--force"], {}),
        "5: remediate --out = the cache": (["remediate", base, "--suite", suite, "--out", str(cache), "--force"], {}),
        "5: report --out inside the cache": (["report", str(tmp / "report.json"), "--out", str(cache / "r")], {}),
        "5: demo --out = the cache": (["demo", "--out", str(cache)], {}),
        "5: holdout = forget": (swap(4, same_split), {}),
        "7: key file holds a newline": (check, {"AUDITQ_CACHE_KEY_FILE": str(tmp / "newline.key")}),
        "7: key file holds 15 bytes": (check, {"AUDITQ_CACHE_KEY_FILE": str(tmp / "15 bytes.key")}),
        "7: key file is a directory": (check, {"AUDITQ_CACHE_KEY_FILE": str(tmp / "dir.key")}),
        "7: AUDITQ_CACHE_KEY of 15 bytes": (check, {"AUDITQ_CACHE_KEY": "x" * 15}),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from helpers import build_world

    local = Path(sys.executable).parent / "auditq"
    auditq = str(local) if local.exists() else shutil.which("auditq")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        world = build_world(tmp / "world")
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp / "home"),
               "AUDITQ_CACHE_DIR": str(tmp / "cache"), "LANG": "C.UTF-8"}
        print(f"auditq refusals, {args.repeats} runs each, installed CLI in a subprocess ({auditq})")
        for name, (argv, extra) in _cases(tmp, world).items():
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                proc = subprocess.run([auditq, *argv], capture_output=True, text=True, env={**env, **extra}, timeout=300)
                times.append(time.perf_counter() - start)
                lines = proc.stderr.strip().splitlines()
                assert proc.returncode == 2 and len(lines) == 1, (name, proc.returncode, proc.stderr[-1500:])
            said = proc.stderr.strip().removeprefix("auditq: error: ")
            print(f"{name:36s} exit 2  best {min(times):5.2f} s  median {statistics.median(times):5.2f} s  "
                  f"{said[:80]}{'...' if len(said) > 80 else ''}")


if __name__ == "__main__":
    main()
